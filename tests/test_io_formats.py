"""istn_sk.io reads PNG of every kind, JPEG, TIFF (stacks too), BMP and MGH, and writes them back.

Test files are made by Pillow, tifffile, nibabel and pypng (for interlaced,
low-bit-depth and 16-bit colour PNGs, which Pillow does not write); pypng's
reader checks the bit depth istn-sk writes.
"""

import nibabel as nib
import numpy as np
import png
import pytest
import tifffile
from PIL import Image

from istn_sk.figures import write_png
from istn_sk.io import image_shape, read_image, read_manifest, write_image

RNG = np.random.default_rng(0)
GREY8 = RNG.integers(0, 256, (9, 7), dtype=np.uint8)
RGBA8 = RNG.integers(0, 256, (9, 7, 4), dtype=np.uint8)
GREY16 = RNG.integers(0, 65536, (9, 7), dtype=np.uint16)
AFFINE = np.array([[2.0, 0, 0, -10], [0, 1.5, 0, 4], [0, 0, 3, 7], [0, 0, 0, 1]])


def unit(samples: np.ndarray, top: int) -> np.ndarray:
    """Samples of maximum ``top`` -> [-1, 1], as read_image maps them."""
    return samples.astype(np.float64) / top * 2 - 1


def grey(pixels: np.ndarray) -> np.ndarray:
    """``(*spatial)`` -> ``(1, *spatial)``."""
    return pixels[None]


def colour(pixels: np.ndarray) -> np.ndarray:
    """``(*spatial, C)`` -> ``(C, *spatial)``."""
    return np.moveaxis(pixels, -1, 0)


def check(path, expected: np.ndarray) -> None:
    image = read_image(path)
    assert image.dtype == np.float32
    assert image.shape == image_shape(path) == expected.shape
    np.testing.assert_allclose(image, expected, atol=1e-6)


def pypng(path, samples: np.ndarray, *, bitdepth: int, interlace: bool = False):
    """Write ``(H, W, planes)`` samples with pypng: 1-2 planes grey, 3-4 colour, 2 and 4 alpha."""
    height, width, planes = samples.shape
    writer = png.Writer(width, height, greyscale=planes <= 2, alpha=planes in (2, 4),
                        bitdepth=bitdepth, interlace=interlace)
    with open(path, "wb") as stream:
        writer.write(stream, samples.reshape(height, -1))
    return path


def png_bitdepth(path) -> int:
    return png.Reader(filename=str(path)).read()[3]["bitdepth"]


@pytest.mark.parametrize(("mode", "pixels", "expected"), [
    ("L", GREY8, grey(GREY8)),
    ("LA", np.stack([GREY8, 255 - GREY8], -1), grey(GREY8)),
    ("RGB", RGBA8[..., :3], colour(RGBA8[..., :3])),
    ("RGBA", RGBA8, colour(RGBA8[..., :3])),
])
def test_8_bit_png_is_grey_or_rgb_without_alpha(tmp_path, mode, pixels, expected):
    Image.fromarray(pixels).save(tmp_path / "x.png")
    assert Image.open(tmp_path / "x.png").mode == mode
    check(tmp_path / "x.png", unit(expected, 255))


def test_16_bit_grey_png_from_pillow(tmp_path):
    Image.fromarray(GREY16).save(tmp_path / "x.png")
    assert png_bitdepth(tmp_path / "x.png") == 16
    check(tmp_path / "x.png", unit(grey(GREY16), 65535))


@pytest.mark.parametrize("bits", [8, 4, 2, 1])
def test_palette_png_reads_its_colours(tmp_path, bits):
    colours = RNG.integers(0, 256, (2**bits, 3), dtype=np.uint8)
    indices = RNG.integers(0, 2**bits, (9, 7), dtype=np.uint8)
    image = Image.frombytes("P", (7, 9), indices.tobytes())
    image.putpalette(colours.ravel().tolist())
    image.save(tmp_path / "x.png", bits=bits)
    assert Image.open(tmp_path / "x.png").mode == "P"
    check(tmp_path / "x.png", unit(colour(colours[indices]), 255))


@pytest.mark.parametrize(("planes", "bitdepth", "interlace"), [
    (1, 1, False), (1, 2, False), (1, 4, False), (1, 2, True), (1, 8, True), (3, 8, True),
    (2, 8, True), (1, 16, True), (3, 16, False), (4, 16, False), (2, 16, False), (3, 16, True),
])
def test_png_of_any_bit_depth_colour_type_and_interlacing(tmp_path, planes, bitdepth,
                                                          interlace):
    top = 2**bitdepth - 1
    samples = RNG.integers(0, top, (9, 7, planes), endpoint=True).astype(
        np.uint16 if bitdepth == 16 else np.uint8)
    path = pypng(tmp_path / "x.png", samples, bitdepth=bitdepth, interlace=interlace)
    kept = grey(samples[..., 0]) if planes <= 2 else colour(samples[..., :3])
    check(path, unit(kept, top))


@pytest.mark.parametrize("like", ["grey16", "rgb16", "grey8", "grey1", "palette"])
def test_png_is_written_at_the_inputs_bit_depth(tmp_path, like):
    source = tmp_path / f"{like}.png"
    if like == "rgb16":
        pypng(source, RNG.integers(0, 65536, (9, 7, 3), dtype=np.uint16), bitdepth=16)
    elif like == "grey1":
        pypng(source, RNG.integers(0, 2, (9, 7, 1), dtype=np.uint8), bitdepth=1)
    elif like == "palette":
        Image.fromarray(RGBA8[..., :3]).convert("P").save(source)
    else:
        Image.fromarray(GREY16 if like == "grey16" else GREY8).save(source)
    image = read_image(source)
    out = write_image(tmp_path / "out.png", image, like=source)
    assert png_bitdepth(out) == (16 if like.endswith("16") else 8)
    np.testing.assert_array_equal(read_image(out), image)   # the samples come back exactly
    assert not list(tmp_path.glob(".tmp-*"))


def test_bit_depth_is_chosen_explicitly_or_refused(tmp_path):
    ramp = np.linspace(-1, 1, 9 * 7, dtype=np.float32).reshape(1, 9, 7)
    assert png_bitdepth(write_image(tmp_path / "a.png", ramp, bit_depth=16)) == 16
    np.testing.assert_allclose(read_image(tmp_path / "a.png"), ramp, atol=1 / 65535)
    assert png_bitdepth(write_image(tmp_path / "b.png", ramp, like=tmp_path / "a.png",
                                    bit_depth=8)) == 8
    with pytest.raises(ValueError, match="JPEG holds uint8 samples, not uint16"):
        write_image(tmp_path / "c.jpg", ramp, bit_depth=16)
    with pytest.raises(ValueError, match="bit_depth must be 8 or 16, got 12"):
        write_image(tmp_path / "d.png", ramp, bit_depth=12)
    with pytest.raises(ValueError, match="bit_depth applies to raster images"):
        write_image(tmp_path / "e.nii.gz", ramp, bit_depth=16)
    assert not list(tmp_path.glob("[cde].*"))


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg"])
@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_reads_as_pillow_decodes_it_and_round_trips_closely(tmp_path, suffix, channels):
    y, x = np.mgrid[:32, :24] / 24.0
    smooth = np.stack([np.sin(x + y), np.cos(x - y), x * y / 2])[:channels].astype(np.float32)
    path = write_image(tmp_path / f"x{suffix}", smooth)
    with Image.open(path) as written:
        assert written.format == "JPEG" and written.mode == ("L" if channels == 1 else "RGB")
        decoded = np.asarray(written)
    check(path, unit(grey(decoded) if channels == 1 else colour(decoded), 255))
    np.testing.assert_allclose(read_image(path), smooth, atol=0.04)


def test_cmyk_jpeg_reads_as_rgb(tmp_path):
    Image.fromarray(RGBA8[..., :3]).convert("CMYK").save(tmp_path / "x.jpg")
    with Image.open(tmp_path / "x.jpg") as written:
        expected = unit(colour(np.asarray(written.convert("RGB"))), 255)
    check(tmp_path / "x.jpg", expected)


@pytest.mark.parametrize("mode", ["1", "L", "RGB", "P"])
def test_bmp_reads_exactly_and_round_trips(tmp_path, mode):
    Image.fromarray(RGBA8[..., :3]).convert(mode).save(tmp_path / "x.bmp")
    with Image.open(tmp_path / "x.bmp") as written:
        decoded = np.asarray(written.convert("RGB" if written.mode in ("P", "RGB") else "L"))
    expected = unit(grey(decoded) if decoded.ndim == 2 else colour(decoded), 255)
    check(tmp_path / "x.bmp", expected)
    np.testing.assert_array_equal(read_image(write_image(tmp_path / "y.bmp", expected)),
                                  read_image(tmp_path / "x.bmp"))


@pytest.mark.parametrize("compression", [None, "zlib", "lzw", "packbits"])
@pytest.mark.parametrize(("pixels", "top"), [(GREY8, 255), (GREY16, 65535),
                                             (RGBA8[..., :3], 255),
                                             (np.stack([GREY16] * 3, -1), 65535)],
                         ids=["grey8", "grey16", "rgb8", "rgb16"])
def test_tiff_8_and_16_bit_grey_and_rgb(tmp_path, compression, pixels, top):
    tifffile.imwrite(tmp_path / "x.tif", pixels, compression=compression,
                     photometric="rgb" if pixels.ndim == 3 else "minisblack")
    check(tmp_path / "x.tif", unit(grey(pixels) if pixels.ndim == 2 else colour(pixels), top))


def test_multi_page_tiff_is_a_3d_volume(tmp_path):
    stack = RNG.integers(0, 65536, (4, 9, 7), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    check(tmp_path / "stack.tif", unit(grey(stack), 65535))
    slices = np.stack([GREY8, 255 - GREY8, GREY8 // 2])
    pages = [Image.fromarray(page) for page in slices]
    pages[0].save(tmp_path / "pages.tiff", save_all=True, append_images=pages[1:])
    check(tmp_path / "pages.tiff", unit(grey(slices), 255))
    rgb = RNG.integers(0, 256, (4, 9, 7, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    check(tmp_path / "rgb.tif", unit(colour(rgb), 255))   # (3, D, H, W)


def test_tiff_layouts_alpha_1_bit_and_other_samples_as_stored(tmp_path):
    tifffile.imwrite(tmp_path / "rgba.tif", RGBA8, photometric="rgb", extrasamples=["unassalpha"])
    check(tmp_path / "rgba.tif", unit(colour(RGBA8[..., :3]), 255))
    planar = colour(RGBA8[..., :3])
    tifffile.imwrite(tmp_path / "planar.tif", planar, photometric="rgb", planarconfig="separate")
    check(tmp_path / "planar.tif", unit(planar, 255))
    bits = GREY8 > 127
    tifffile.imwrite(tmp_path / "bits.tif", bits)
    with tifffile.TiffFile(tmp_path / "bits.tif") as tiff:
        assert tiff.pages[0].bitspersample == 1
    check(tmp_path / "bits.tif", unit(grey(bits), 1))
    values = RNG.normal(0, 100, (2, 9, 7)).astype(np.float32)
    tifffile.imwrite(tmp_path / "float.tif", values, photometric="minisblack")
    check(tmp_path / "float.tif", values[None])
    signed = RNG.integers(-1000, 3000, (9, 7), dtype=np.int16)   # e.g. CT numbers
    tifffile.imwrite(tmp_path / "ct.tif", signed)
    check(tmp_path / "ct.tif", signed[None].astype(np.float64))


@pytest.mark.parametrize(("dtype", "written"), [(np.uint8, np.uint8), (np.uint16, np.uint16),
                                                (np.float32, np.float32),
                                                (np.int16, np.float32)])
def test_tiff_stacks_are_written_with_the_inputs_sample_type(tmp_path, dtype, written):
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    stored = (RNG.integers(info.min, info.max, (3, 9, 7), endpoint=True) if info
              else RNG.normal(0, 5, (3, 9, 7))).astype(dtype)
    tifffile.imwrite(tmp_path / "in.tif", stored, photometric="minisblack")
    image = read_image(tmp_path / "in.tif")
    out = write_image(tmp_path / "out.tif", image, like=tmp_path / "in.tif")
    np.testing.assert_array_equal(tifffile.imread(out).astype(written),
                                  stored.astype(written))
    assert tifffile.imread(out).dtype == written
    np.testing.assert_array_equal(read_image(out), image)
    with pytest.raises(ValueError, match=r"TIFF needs a \(1 or 3, H, W\) or \(1 or 3, D, H, W\)"):
        write_image(tmp_path / "bad.tif", np.zeros((2, 3, 4, 5)))


def test_mgz_round_trip_keeps_affine_and_header(tmp_path):
    data = RNG.normal(size=(6, 5, 4)).astype(np.float32)
    source = tmp_path / "in.mgz"
    nib.save(nib.MGHImage(data, AFFINE), source)
    check(source, data[None])
    out = nib.load(write_image(tmp_path / "out.mgz", read_image(source) * 2, like=source))
    assert isinstance(out, nib.MGHImage)
    np.testing.assert_allclose(out.affine, AFFINE)
    np.testing.assert_array_equal(np.asarray(out.dataobj), data * 2)
    nifti = nib.load(write_image(tmp_path / "out.nii.gz", read_image(source), like=source))
    np.testing.assert_allclose(nifti.affine, AFFINE)
    channels = RNG.normal(size=(4, 4, 3, 2)).astype(np.float32)
    nib.save(nib.MGHImage(channels, AFFINE), tmp_path / "c.mgh")
    check(tmp_path / "c.mgh", np.moveaxis(channels, -1, 0))
    with pytest.raises(ValueError, match=r"MGH needs a \(C, X, Y, Z\) image"):
        write_image(tmp_path / "flat.mgz", np.zeros((1, 4, 4)))


@pytest.mark.parametrize(("name", "kind"), [("x.png", "PNG"), ("x.jpg", "JPEG"),
                                            ("x.tif", "TIFF"), ("x.bmp", "BMP"),
                                            ("x.mgz", "MGH")])
def test_unreadable_files_are_named(tmp_path, name, kind):
    (tmp_path / name).write_bytes(b"not an image at all" * 20)
    for call in (read_image, image_shape):
        with pytest.raises(ValueError, match=rf"{name}: not a readable {kind} image"):
            call(tmp_path / name)


def test_truncated_png_and_tiff_are_named(tmp_path):
    Image.fromarray(RNG.integers(0, 256, (64, 64), dtype=np.uint8)).save(tmp_path / "a.png")
    tifffile.imwrite(tmp_path / "a.tif", RNG.integers(0, 256, (3, 64, 64), dtype=np.uint8),
                     photometric="minisblack")
    for name, kind in (("a.png", "PNG"), ("a.tif", "TIFF")):
        whole = (tmp_path / name).read_bytes()
        (tmp_path / f"cut-{name}").write_bytes(whole[: len(whole) // 2])
        with pytest.raises(ValueError, match=f"cut-{name}: not a readable {kind} image"):
            read_image(tmp_path / f"cut-{name}")


def test_a_folder_manifest_lists_every_format(tmp_path):
    for relative in ("A/x.png", "A/y.jpg", "B/z.tif", "B/w.bmp"):
        (tmp_path / relative).parent.mkdir(exist_ok=True)
        write_image(tmp_path / relative, np.zeros((1, 4, 4)))
    nib.save(nib.MGHImage(np.zeros((4, 4, 4), np.float32), AFFINE), tmp_path / "B" / "v.mgz")
    table = read_manifest(tmp_path).table
    assert table["image"].tolist() == ["A/x.png", "A/y.jpg", "B/v.mgz", "B/w.bmp", "B/z.tif"]
    assert table["id"].tolist() == ["x", "y", "v", "w", "z"]


def test_write_png_figures_through_pillow(tmp_path):
    picture = RGBA8[..., :3]
    with Image.open(write_png(tmp_path / "f.png", picture)) as written:
        np.testing.assert_array_equal(np.asarray(written), picture)
    with pytest.raises(ValueError, match=r"uint8 \(H, W\) or \(H, W, 3\)"):
        write_png(tmp_path / "g.png", RGBA8)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["f.png"]
