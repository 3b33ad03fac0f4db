"""Hugging Face citizens: artifacts that stock libraries load (inference files, portable names), model cards,
standalone exports and pushes. Import the modules themselves (`peft_ladder.hub.export`, `.push`); this package
file stays empty so that `peft_ladder.artifacts` can use the card and file helpers without an import cycle."""
