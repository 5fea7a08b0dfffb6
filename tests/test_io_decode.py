import numpy as np
import pytest
from badimages import RED, corpus

from raymix.io.decode import BadImage, decode_batch, decode_image, encode_batch, encode_jpeg, resize_image

CORPUS = corpus()


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_decodes_to_rgb_or_gives_a_reason(name):
    data, expected = CORPUS[name]
    if isinstance(expected, str):
        with pytest.raises(BadImage) as err:
            decode_image(data)
        assert err.value.reason == expected
    else:
        expected(decode_image(data))


def test_limits_are_per_call():
    data, _ = CORPUS["good.jpg"]
    with pytest.raises(BadImage, match="too-many-pixels"):
        decode_image(data, max_pixels=48 * 64 - 1)
    with pytest.raises(BadImage, match="too-small"):
        decode_image(CORPUS["tiny-1x1.png"][0], min_side=8)
    with pytest.raises(BadImage, match="missing"):
        decode_image(None)


def test_decode_batch_keeps_bad_rows_flowing():
    names = sorted(CORPUS)
    batch = {
        "key": np.array(names, dtype=object),
        "image": np.array([CORPUS[n][0] for n in names] + [None], dtype=object)[:-1],
    }
    batch["stage"] = np.array(["" if n != "good.png" else "edit" for n in names])
    batch["reason"] = np.array(["" if n != "good.png" else "model-error" for n in names])
    out = decode_batch(batch, size=32)
    assert out["image"].shape == (len(names), 32, 32, 3) and out["image"].dtype == np.uint8
    for i, n in enumerate(names):
        expected = CORPUS[n][1]
        if n == "good.png":  # failed upstream: passes through untouched
            assert (out["stage"][i], out["reason"][i]) == ("edit", "model-error")
        elif isinstance(expected, str):
            assert (out["stage"][i], out["reason"][i]) == ("decode", expected)
            assert not out["image"][i].any()
        else:
            assert out["reason"][i] == "" and out["image"][i].any()


def test_decode_batch_native_size_and_draft_keep_content():
    big = np.zeros((900, 1200, 3), np.uint8)
    big[:, :600] = RED
    data = encode_jpeg(big, 95)
    out = decode_batch({"image": np.array([data], dtype=object)}, size=None)
    assert out["image"][0].shape == (900, 1200, 3)
    drafted = decode_batch({"image": np.array([data], dtype=object)}, size=64, resize="resize")["image"][0]
    full = decode_batch({"image": np.array([data], dtype=object)}, size=64, resize="resize", draft=False)["image"][0]
    assert np.abs(drafted.astype(int) - full.astype(int)).mean() < 3
    assert np.allclose(drafted[:, :28].reshape(-1, 3).mean(0), RED, atol=8)


def test_resize_modes():
    arr = np.zeros((100, 200, 3), np.uint8)
    assert resize_image(arr, 50, "center_crop").shape == (50, 50, 3)
    assert resize_image(arr, 50, "resize").shape == (50, 50, 3)
    assert resize_image(arr, 50, "shorter_side").shape == (50, 100, 3)
    with pytest.raises(ValueError):
        resize_image(arr, 50, "stretch")


def test_encode_batch_round_trip_and_failures():
    img = np.full((16, 16, 3), 120, np.uint8)
    batch = {
        "key": np.array(["a", "b", "c"], dtype=object),
        "image": np.array([img, np.zeros((4, 4, 5), np.uint8), img], dtype=object),
        "stage": np.array(["", "", "decode"]),
        "reason": np.array(["", "", "truncated"]),
    }
    out = encode_batch(batch)
    assert abs(int(decode_image(out["image"][0]).mean()) - 120) <= 2
    assert (out["stage"][1], out["reason"][1], out["image"][1]) == ("encode", "encode-failed", b"")
    assert (out["reason"][2], out["image"][2]) == ("truncated", b"")


def test_decode_batch_accepts_pixel_arrays():
    arrays = np.empty(3, dtype=object)
    arrays[0] = np.full((10, 20, 3), 50, np.uint8)
    arrays[1] = np.zeros((4, 4, 3), np.float32)
    arrays[2] = np.full((8, 8, 4), 255, np.uint8)
    out = decode_batch({"image": arrays}, size=8)
    assert list(out["reason"]) == ["", "bad-array", ""]
    assert out["image"][0].mean() == 50 and out["image"][2].mean() == 255


def test_decode_batch_accepts_hugging_face_image_structs():
    jpeg = encode_jpeg(np.full((12, 12, 3), 200, np.uint8))
    structs = np.array([{"bytes": jpeg, "path": "a.jpg"}, {"bytes": None, "path": "b.jpg"}], dtype=object)
    out = decode_batch({"image": structs}, size=8)
    assert out["reason"][0] == "" and abs(int(out["image"][0].mean()) - 200) <= 2
    assert out["reason"][1] != ""


def test_a_block_whose_images_are_all_null_is_quarantined_not_a_crash():
    from raymix.io.decode import decode_batch

    # Ray turns an all-null binary column into a float array of NaN.
    for images in (np.full(3, np.nan, np.float32), np.array([None, None, None], dtype=object),
                   np.array([{"bytes": None, "path": "gone.jpg"}] * 3, dtype=object)):
        out = decode_batch({"image": images, "key": np.array(["a", "b", "c"])}, size=8)
        assert list(out["reason"]) == ["missing"] * 3 and list(out["stage"]) == ["decode"] * 3
        assert out["image"].shape == (3, 8, 8, 3)
