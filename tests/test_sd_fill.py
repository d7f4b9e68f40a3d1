"""StableDiffusionFill and load_inpaint_pipeline on CPU with a tiny random pipeline."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from gpu.loading import (  # noqa: E402
    CudaUnavailableError,
    ModelNotFoundError,
    NotInpaintingModelError,
    load_inpaint_pipeline,
)
from gpu.sd_fill import FillOutOfMemoryError, StableDiffusionFill  # noqa: E402
from gpu.tiles import plan_tiles  # noqa: E402
from tests.synthetic import textured_background  # noqa: E402
from tests.tiny_sd import TINY_EMBED_DIM, TINY_TILE, tiny_inpaint_pipeline  # noqa: E402

STEPS = 2


@pytest.fixture(scope="module")
def pipe():
    return tiny_inpaint_pipeline(seed=0)


@pytest.fixture(scope="module")
def scene():
    """A 64x160 panorama with side strips and an inner hole (3 tiles); hole pixels zeroed."""
    image = textured_background(64, 160, seed=4)
    known = np.ones((64, 160), bool)
    known[:, :20] = False
    known[:, -20:] = False
    known[24:40, 72:88] = False
    image[~known] = 0
    return image, known


def make_fill(pipe, **kwargs) -> StableDiffusionFill:
    kwargs.setdefault("prompt", "a quiet street")
    kwargs.setdefault("steps", STEPS)
    return StableDiffusionFill(pipe, **kwargs)


class CountingPipe:
    """Forwards to a real pipeline and records the batch size of every call (and failures)."""

    def __init__(self, pipe, oom_above: int | None = None):
        self._pipe = pipe
        self.oom_above = oom_above
        self.batches: list[int] = []
        self.threads: list[str] = []
        self.encodes = 0

    def __getattr__(self, name):
        return getattr(self._pipe, name)

    def encode_prompt(self, *args, **kwargs):
        self.encodes += 1
        return self._pipe.encode_prompt(*args, **kwargs)

    def __call__(self, **kwargs):
        n = kwargs["prompt_embeds"].shape[0]
        self.batches.append(n)
        self.threads.append(threading.current_thread().name)
        if self.oom_above is not None and n > self.oom_above:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (fake, batch {n})")
        return self._pipe(**kwargs)


# -- the fill -------------------------------------------------------------------------------


def test_fill_changes_only_hole_pixels(pipe, scene):
    image, known = scene
    with_fill = make_fill(pipe, seed=3)
    try:
        out = with_fill(image, known)
    finally:
        with_fill.close()
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[known], image[known])
    assert out[~known].std() > 1  # something was generated, not left black
    assert not (out[~known] == 0).all()


def test_same_seed_same_output_different_seed_different(pipe, scene):
    image, known = scene
    fills = [make_fill(pipe, seed=s) for s in (7, 7, 8)]
    try:
        a, b, c = (f(image, known) for f in fills)
    finally:
        for f in fills:
            f.close()
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int))[~known].mean() > 1


def test_batch_size_does_not_change_result_or_tile_order(pipe, scene):
    image, known = scene
    plan = plan_tiles(known, TINY_TILE)
    assert len([t for t in plan if t.wave == 0]) >= 3
    results = {}
    for batch in (1, 3):
        counting = CountingPipe(pipe)
        fill = make_fill(counting, seed=11, batch_size=batch)
        try:
            results[batch] = fill(image, known)
        finally:
            fill.close()
        assert max(counting.batches) == batch
        assert sum(counting.batches) == len(plan)
    # Same tiles with the same per-tile seeds: equal up to float summation order.
    diff = np.abs(results[1].astype(int) - results[3].astype(int))
    assert diff.max() <= 2, diff.max()


class FakePipe:
    """A stand-in pipeline that paints each tile's hole with a colour from its generator seed."""

    vae_scale_factor = 2
    device = torch.device("cpu")
    tokenizer = None

    def __init__(self):
        config = SimpleNamespace(sample_size=32, in_channels=9)
        self.unet = SimpleNamespace(config=config, dtype=torch.float32)
        self.calls: list[list[int]] = []
        self.masks: list[np.ndarray] = []

    def set_progress_bar_config(self, **_):
        pass

    def encode_prompt(self, prompt, device, n, cfg, negative, prompt_embeds=None, **_):
        return prompt_embeds, None

    def __call__(self, *, image, mask_image, generator, **_):
        seeds = [g.initial_seed() for g in generator]
        self.calls.append(seeds)
        self.masks += [m[0].numpy() > 0.5 for m in mask_image]
        out = image.clone()
        for i, s in enumerate(seeds):
            colour = torch.tensor(seed_colour(s), dtype=torch.float32) / 255
            out[i] = torch.where(mask_image[i] > 0.5, colour[:, None, None], image[i])
        return (out, None)


def seed_colour(seed: int) -> list[int]:
    return [(seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256]


def test_batches_keep_tile_order_and_seeds():
    image = textured_background(64, 320, seed=1)
    known = np.ones((64, 320), bool)
    centres = [32 + 64 * k for k in range(5)]
    for c in centres:
        known[24:40, c - 8 : c + 8] = False
    image[~known] = 0
    fake = FakePipe()
    embeds = torch.zeros(1, 77, TINY_EMBED_DIM)
    fill = StableDiffusionFill(fake, seed=100, guidance=1.0, batch_size=2, prompt_embeds=embeds)
    try:
        out = fill(image, known)
    finally:
        fill.close()
    assert fake.calls == [[100, 101], [102, 103], [104]]
    for k, c in enumerate(centres):  # tile k (left to right) painted with seed 100 + k
        expected = seed_colour(100 + k)
        hole = out[24:40, c - 8 : c + 8].reshape(-1, 3)
        np.testing.assert_allclose(hole, np.tile(expected, (hole.shape[0], 1)), atol=1)
    np.testing.assert_array_equal(out[known], image[known])


def test_later_waves_see_earlier_tiles_output_as_context():
    known = np.zeros((64, 200), bool)  # nothing known: tiles overlap and need several waves
    image = np.zeros((64, 200, 3), np.uint8)
    plan = plan_tiles(known, 64, 8, 8)
    assert {t.wave for t in plan} == {0, 1}
    fake = FakePipe()
    fill = StableDiffusionFill(
        fake,
        guidance=1.0,
        tile=64,
        overlap=8,
        margin=8,
        batch_size=8,
        prompt_embeds=torch.zeros(1, 77, TINY_EMBED_DIM),
    )
    try:
        out = fill(image, known)
    finally:
        fill.close()
    for t, mask in zip(plan, fake.masks, strict=True):
        if t.wave == 0:
            assert mask.all()  # nothing to look at yet
        else:  # the strips wave 0 generated are context now, not regenerated
            assert 0 < mask.mean() < 1
    assert len(np.unique(out.reshape(-1, 3), axis=0)) >= len(plan)


def test_batch_size_follows_vram_budget(pipe):
    from gpu.memory import GIB, RESERVE_BYTES, activation_bytes, choose_batch_size, weights_bytes

    assert not getattr(pipe.vae, "use_slicing", False)
    weights = weights_bytes(pipe.unet, pipe.vae, pipe.text_encoder)
    per_tile, vae = activation_bytes(pipe.unet.config, pipe.vae.config, 64, 64, 4, 2, cfg=True)
    fits_three = (weights + RESERVE_BYTES + 3 * (per_tile + vae) + 1) / GIB
    assert choose_batch_size(pipe, 64, 64, fits_three, cfg=True) == 3
    assert choose_batch_size(pipe, 64, 64, fits_three, cfg=False) > 3
    assert choose_batch_size(pipe, 64, 64, 1e-6, cfg=True) == 1
    assert choose_batch_size(pipe, 64, 64, 1000.0, cfg=True, max_batch=5) == 5
    with pytest.raises(ValueError, match="budget_gb"):
        choose_batch_size(pipe, 64, 64, 0, cfg=True)


def test_no_hole_returns_input_without_calling_the_model():
    fake = FakePipe()
    image = textured_background(64, 64)
    fill = StableDiffusionFill(fake, guidance=1.0, prompt_embeds=torch.zeros(1, 77, TINY_EMBED_DIM))
    try:
        out = fill(image, np.ones((64, 64), bool))
    finally:
        fill.close()
    np.testing.assert_array_equal(out, image)
    assert fake.calls == []


def test_prompt_encoded_once_and_work_runs_on_one_worker_thread(pipe, scene):
    image, known = scene
    counting = CountingPipe(pipe)
    fill = make_fill(counting, seed=1)
    try:
        futures = [fill.submit(image, known) for _ in range(2)]
        outs = [f.result(timeout=120) for f in futures]
    finally:
        fill.close()
    assert counting.encodes == 1
    assert set(counting.threads) and all(t.startswith("sd-fill") for t in counting.threads)
    np.testing.assert_array_equal(outs[0], outs[1])
    with pytest.raises(RuntimeError, match="closed"):
        fill.submit(image, known)


def test_prompt_embeds_work_without_text_encoder(scene):
    image, known = scene
    bare = tiny_inpaint_pipeline(seed=0, with_text=False)
    gen = torch.Generator().manual_seed(0)
    embeds = torch.randn(1, 77, TINY_EMBED_DIM, generator=gen)
    with pytest.raises(ValueError, match="negative_prompt_embeds"):
        StableDiffusionFill(bare, prompt_embeds=embeds, guidance=7.5)
    fill = StableDiffusionFill(
        bare,
        steps=STEPS,
        prompt_embeds=embeds,
        negative_prompt_embeds=torch.zeros_like(embeds),
    )
    try:
        out = fill(image, known)
    finally:
        fill.close()
    np.testing.assert_array_equal(out[known], image[known])


def test_out_of_memory_halves_the_batch_and_retries(pipe, scene):
    image, known = scene
    n_wave0 = len([t for t in plan_tiles(known, TINY_TILE) if t.wave == 0])
    assert n_wave0 >= 3
    counting = CountingPipe(pipe, oom_above=1)
    fill = make_fill(counting, seed=5, batch_size=4)
    try:
        out = fill(image, known)
    finally:
        fill.close()
    # 3 tiles in wave 0: try 3 -> OOM, halve to 1 (3 // 2), then ones from there on.
    assert counting.batches[0] == min(4, n_wave0)
    assert counting.batches[1] == min(4, n_wave0) // 2
    assert set(counting.batches[1:]) == {1}
    reference = make_fill(pipe, seed=5, batch_size=1)
    try:
        np.testing.assert_array_equal(out, reference(image, known))
    finally:
        reference.close()


def test_out_of_memory_at_batch_one_raises_clear_error(pipe, scene):
    image, known = scene
    fill = make_fill(CountingPipe(pipe, oom_above=0), batch_size=2)
    try:
        with pytest.raises(FillOutOfMemoryError, match="single") as info:
            fill(image, known)
        assert isinstance(info.value.__cause__, torch.cuda.OutOfMemoryError)
    finally:
        fill.close()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 0}, "steps"),
        ({"tile": 60}, "tile"),
        ({"overlap": 40}, "overlap"),
        ({"vram_budget_gb": 0}, "vram_budget_gb"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_fill_rejects_bad_settings(pipe, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_fill(pipe, **kwargs)


def test_fill_rejects_bad_inputs_before_work(pipe, scene):
    image, known = scene
    fill = make_fill(pipe)
    try:
        with pytest.raises(ValueError, match="uint8"):
            fill.submit(image.astype(np.float32), known)
        with pytest.raises(ValueError, match="known"):
            fill.submit(image, known[:, :10])
    finally:
        fill.close()


def test_fill_refuses_non_inpainting_pipeline():
    plain = tiny_inpaint_pipeline(in_channels=4, with_text=False)
    with pytest.raises(ValueError, match="4 input channels"):
        StableDiffusionFill(plain, prompt_embeds=torch.zeros(1, 77, TINY_EMBED_DIM))


# -- loading --------------------------------------------------------------------------------


def test_save_and_load_back_offline(pipe, scene, tmp_path):
    pipe.save_pretrained(tmp_path / "tiny")
    loaded = load_inpaint_pipeline(str(tmp_path / "tiny"), "cpu", allow_cpu=True, scheduler="euler")
    assert loaded.unet.config.in_channels == 9
    assert loaded.unet.dtype == torch.float32
    assert type(loaded.scheduler).__name__ == "EulerDiscreteScheduler"
    assert loaded.safety_checker is None
    assert loaded.vae.use_slicing
    for a, b in zip(pipe.unet.parameters(), loaded.unet.parameters(), strict=True):
        assert torch.equal(a, b)


def test_cuda_device_falls_back_to_cpu_only_when_allowed(pipe, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    pipe.save_pretrained(tmp_path / "tiny")
    with pytest.raises(CudaUnavailableError, match="CUDA is not available"):
        load_inpaint_pipeline(str(tmp_path / "tiny"), "cuda")
    with pytest.raises(CudaUnavailableError, match="allow_cpu"):
        load_inpaint_pipeline(str(tmp_path / "tiny"), "cpu")
    loaded = load_inpaint_pipeline(str(tmp_path / "tiny"), "cuda", allow_cpu=True)
    assert loaded.device.type == "cpu"


def test_missing_path_says_how_to_get_a_model(tmp_path):
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(ModelNotFoundError, match="huggingface-cli download") as info:
        load_inpaint_pipeline(missing, "cpu", allow_cpu=True)
    assert missing in str(info.value)
    assert isinstance(info.value, FileNotFoundError)


def test_uncached_hub_id_is_not_downloaded():
    with pytest.raises(ModelNotFoundError, match="nobody-xyz/not-a-model"):
        load_inpaint_pipeline("nobody-xyz/not-a-model", "cpu", allow_cpu=True)


def test_pickled_checkpoint_is_refused(tmp_path):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"not really")
    with pytest.raises(ModelNotFoundError, match="safetensors"):
        load_inpaint_pipeline(str(ckpt), "cpu", allow_cpu=True)


def test_non_inpainting_model_is_refused(tmp_path):
    tiny_inpaint_pipeline(in_channels=4).save_pretrained(tmp_path / "plain")
    with pytest.raises(NotInpaintingModelError, match="4 input channels"):
        load_inpaint_pipeline(str(tmp_path / "plain"), "cpu", allow_cpu=True)


def test_bad_scheduler_name_is_refused(pipe, tmp_path):
    with pytest.raises(ValueError, match="'nope'"):
        load_inpaint_pipeline("x", "cpu", allow_cpu=True, scheduler="nope")
    pipe.save_pretrained(tmp_path / "tiny")
    with pytest.raises(ValueError, match="NoSuchScheduler"):
        load_inpaint_pipeline(
            str(tmp_path / "tiny"), "cpu", allow_cpu=True, scheduler="NoSuchScheduler"
        )
    by_class = load_inpaint_pipeline(
        str(tmp_path / "tiny"), "cpu", allow_cpu=True, scheduler="DPMSolverMultistepScheduler"
    )
    assert type(by_class.scheduler).__name__ == "DPMSolverMultistepScheduler"


def test_importing_packages_does_not_import_torch_or_diffusers():
    code = (
        "import sys, gpu, gpu.tiles, gpu.memory, gpu.loading, gpu.sd_fill, stages;"
        "bad = {'torch', 'diffusers', 'transformers'} & set(sys.modules);"
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    root = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr + res.stdout


# -- GPU ------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_tiny_fill_on_cuda_fp16(scene, tmp_path):
    image, known = scene
    tiny_inpaint_pipeline(seed=0).save_pretrained(tmp_path / "tiny")
    cuda_pipe = load_inpaint_pipeline(str(tmp_path / "tiny"), "cuda")
    assert cuda_pipe.unet.dtype == torch.float16
    fill = make_fill(cuda_pipe, seed=2)
    try:
        a, b = fill(image, known), fill.submit(image, known).result()
    finally:
        fill.close()
    np.testing.assert_array_equal(a[known], image[known])
    np.testing.assert_array_equal(a, b)
