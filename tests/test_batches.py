"""helpers.data.batches: the numpy pipeline Keras on JAX trains from gives tf.data's batches (make_dataset, TensorFlow)."""
import numpy as np
import pytest

from helpers.data.batches import ArrayBatches
from helpers.data.dataset import make_dataset, validate_images_and_masks

WEIGHTS = np.array([0.5, 1.0, 2.0, 3.0, 10.0], np.float32)


def _arrays(n=21, seed=5):
    rng = np.random.default_rng(seed)
    images = (rng.integers(0, 256, (n, 64, 128)) / 255).astype(np.float32)
    masks = rng.integers(0, 5, (n, 64, 128)).astype(np.uint8)
    return images, masks


@pytest.mark.parametrize("class_weights", [None, WEIGHTS])
@pytest.mark.parametrize("drop_remainder", [False, True])
def test_unshuffled_batches_equal_tf_data(class_weights, drop_remainder):
    images, masks = _arrays()
    reference = list(make_dataset(images, masks, batch_size=8, class_weights=class_weights,
                                  drop_remainder=drop_remainder).as_numpy_iterator())
    batches = ArrayBatches(*validate_images_and_masks(images, masks), batch_size=8, class_weights=class_weights,
                           drop_remainder=drop_remainder)
    assert len(batches) == len(reference) == (2 if drop_remainder else 3)
    for index, expected in enumerate(reference):
        got = batches[index]
        for part, want in zip(got, expected):
            assert part.dtype == want.dtype and part.shape == want.shape
            np.testing.assert_array_equal(part, want)
    with pytest.raises(IndexError):
        batches[len(reference)]


def test_sample_weights_are_the_class_weights_of_each_pixel():
    images, masks = _arrays(n=4)
    _, y, weight = ArrayBatches(images, masks, batch_size=4, class_weights=WEIGHTS)[0]
    np.testing.assert_array_equal(weight, WEIGHTS[masks])
    assert y.dtype == np.int32


def test_shuffled_passes_are_seeded_permutations_and_repeat_is_endless():
    images, masks = _arrays(n=10)
    images = np.broadcast_to(np.arange(10, dtype=np.float32)[:, None, None] / 10, images.shape).copy()
    stream = ArrayBatches(images, masks, batch_size=4, shuffle=True, seed=3, repeat=True)
    assert stream.num_batches is None and len(stream) == 3

    def ids(index):
        return [int(round(v * 10)) for v in stream[index][0][:, 0, 0, 0]]

    first = ids(0) + ids(1) + ids(2)
    second = ids(3) + ids(4) + ids(5)
    assert sorted(first) == sorted(second) == list(range(10)), "each pass shows every image once"
    assert first != second, "each pass is reshuffled"
    again = ArrayBatches(images, masks, batch_size=4, shuffle=True, seed=3, repeat=True)
    assert [int(round(v * 10)) for v in again[0][0][:, 0, 0, 0]] == ids(0), "the seed fixes the order"


def test_a_finite_stream_reshuffles_at_each_epoch_end():
    images, masks = _arrays(n=10)
    batches = ArrayBatches(images, masks, batch_size=10, shuffle=True, seed=0)
    first = batches[0][0].copy()
    batches.on_epoch_end()
    second = batches[0][0]
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(np.sort(first.ravel()), np.sort(second.ravel()))


def test_too_few_images_for_one_batch_is_a_clear_error():
    images, masks = _arrays(n=3)
    with pytest.raises(ValueError, match="make no batch of 8"):
        ArrayBatches(images, masks, batch_size=8, drop_remainder=True)
