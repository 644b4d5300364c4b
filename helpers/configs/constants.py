"""Facts of the task shared by every module: image size, classes, the metric's ignored class."""

IMAGE_HEIGHT, IMAGE_WIDTH = 64, 128
IMAGE_SHAPE = (IMAGE_HEIGHT, IMAGE_WIDTH)
INPUT_SHAPE = (IMAGE_HEIGHT, IMAGE_WIDTH, 1)

NUM_CLASSES = 5
CLASS_NAMES = ("background", "soil", "bedrock", "sand", "big rock")
BACKGROUND, SOIL, BEDROCK, SAND, BIG_ROCK = range(NUM_CLASSES)
LABELLED_CLASSES = (SOIL, BEDROCK, SAND, BIG_ROCK)  # scored; background is ignored

N_TRAIN_REAL = 2615  # images in the competition's training_set
N_TEST_REAL = 10022  # images in the competition's test_set
N_ALIENS_REAL = 110  # training images sharing the one alien mask

PRIMARY = "miou_fg"
"""The study's primary score (`helpers.model.metrics.miou_fg`): its key in a record's `test` and leaderboard parts."""
MONITOR = f"val_{PRIMARY}"
"""Its validation log key: what early stopping, the best epoch, plateau cuts and the learning checks watch."""


BACKENDS = ("tensorflow", "jax")
"""The Keras backends this project runs on; TensorFlow is Keras's and Kaggle's default."""
