"""Deploying what the ladder chose: `predict` and `evaluate` (and `peft-ladder predict|evaluate`) run a rung, any
rung of a ladder or an export on new data, batch-wise through Accelerate. Import the modules themselves
(`peft_ladder.inference.loop`); `peft_ladder` exports `predict` and `evaluate` lazily."""
