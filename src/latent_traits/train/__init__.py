TRAIN_RESULT = "train_result.json"  # written last: its presence marks a finished adapter
