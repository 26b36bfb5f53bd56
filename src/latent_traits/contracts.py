"""Constants the stages agree on, kept below all of them: the layers only look down
(data -> model -> train / eval -> analysis), so what two stages share lives here."""

IGNORE_INDEX = -100  # a label position the loss skips (the prompt, padding, an example's first token)
TRAIN_RESULT = "train_result.json"  # written last into an adapter folder: its presence marks a finished adapter
