"""Token vocoder on a tiny config: streaming == offline, no clicks at chunk boundaries, training lowers the loss and
resumes exactly, save/load, and `aqaa detokenize` (good and bad token files)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from aqaa.vocoder.model import FRAMES_PER_GROUP, PRESETS, TokenVocoder


@pytest.fixture(scope="module")
def trained(tiny_corpus, tmp_path_factory):
    from aqaa.train.vocoder import train_vocoder

    out = tmp_path_factory.mktemp("voc")
    folder = train_vocoder(tiny_corpus["data"], tiny_corpus["tokens"], out, "tiny",
                           ["steps=20", "batch=2", "crop_groups=6", "log_every=1", "ckpt_every=5", "warmup=2"])
    return out, TokenVocoder.load(folder)


def _stream(voc: TokenVocoder, lin, sem, groups_per_chunk: int) -> tuple[np.ndarray, list[int]]:
    s, outs = voc.start(), []
    for g in range(0, len(lin) // 2, groups_per_chunk):
        outs.append(s.step(lin[2 * g: 2 * (g + groups_per_chunk)], sem[3 * g: 3 * (g + groups_per_chunk)]))
    outs.append(s.flush())
    return np.concatenate(outs), list(np.cumsum([len(o) for o in outs])[:-1])


def _losses_straight_and_resumed(corpus: dict, tmp_path, over: list[str], stop_after: int) -> tuple[list, list]:
    """Logged losses of one run straight through (a/) and of one stopped after `stop_after` steps and resumed (b/)."""
    from aqaa.train.vocoder import train_vocoder

    train_vocoder(corpus["data"], corpus["tokens"], tmp_path / "a", "tiny", over)
    train_vocoder(corpus["data"], corpus["tokens"], tmp_path / "b", "tiny", over, stop_after=stop_after)
    train_vocoder(corpus["data"], corpus["tokens"], tmp_path / "b", "tiny", over)
    return tuple([json.loads(x)["loss"] for x in (tmp_path / k / "metrics.jsonl").read_text().splitlines()]
                 for k in "ab")


def _pulses_and_noise(n: int = 16_000) -> tuple[torch.Tensor, torch.Tensor]:
    """One second of a 100 Hz sine (periodic) and of seeded white noise, each [1, n] at 16 kHz."""
    t = torch.arange(n) / 16_000
    return torch.sin(2 * torch.pi * 100 * t)[None], torch.randn(generator=torch.Generator().manual_seed(0), size=(1, n))


@pytest.mark.parametrize("chunk", [1, 3])
def test_streaming_equals_offline_without_boundary_clicks(trained, tiny_corpus, chunk):
    _, voc = trained
    row = json.loads((tiny_corpus["tokens"]).read_text().splitlines()[0])
    lin, sem = np.array(row["linguistic"]), np.array(row["semantic"])
    offline = voc.synthesize(lin, sem)
    streamed, boundaries = _stream(voc, lin, sem, chunk)
    assert len(streamed) == len(offline) == len(lin) // 2 * 1920
    assert np.abs(streamed - offline).max() < 1e-4 * max(1.0, np.abs(offline).max())
    jumps = np.abs(np.diff(streamed))
    typical = np.percentile(jumps, 99)
    assert max(jumps[b - 1] for b in boundaries if 0 < b < len(streamed)) <= 3 * typical + 1e-6
    # the state is explicit: a copy continues the same way as the original
    s = voc.start()
    s.step(lin[:2], sem[:3])
    fork = s.state.copy()
    a = s.step(lin[2:4], sem[3:6])
    s.state = fork
    assert np.array_equal(a, s.step(lin[2:4], sem[3:6]))


def test_training_lowers_loss_resumes_and_round_trips(trained, tiny_corpus, tmp_path):
    from aqaa.data.tokens import read_tokens
    from aqaa.train.vocoder import ClipBank, mel_loss, stft_loss, vocoder_clips

    out, voc = trained
    tokens = read_tokens(tiny_corpus["tokens"])
    bank = ClipBank(tiny_corpus["data"], vocoder_clips(tiny_corpus["data"], tokens, "joe"), tokens)
    import random

    lin, sem, wav = bank.batch(8, 6, random.Random(123))
    torch.manual_seed(0)
    untrained = TokenVocoder(PRESETS["tiny"]).eval()
    with torch.no_grad():
        before = (stft_loss(untrained(lin, sem), wav) + mel_loss(untrained(lin, sem), wav)).item()
        after = (stft_loss(voc(lin, sem), wav) + mel_loss(voc(lin, sem), wav)).item()
    assert after < before
    over = ["steps=8", "batch=2", "crop_groups=6", "log_every=1", "ckpt_every=3", "warmup=2"]
    la, lb = _losses_straight_and_resumed(tiny_corpus, tmp_path, over, stop_after=5)
    assert len(la) == len(lb) == 8 and lb == pytest.approx(la, abs=1e-5)
    back = TokenVocoder.load(out / "model")
    for k, v in voc.state_dict().items():
        assert torch.equal(v, back.state_dict()[k])


def test_adversarial_finetune_trains_the_discriminator_and_resumes_exactly(trained, tiny_corpus, tmp_path):
    """With adv_weight the discriminator learns beside the generator, from a trained vocoder, and is checkpointed
    with it: a run stopped and resumed logs the same losses as one run straight through."""
    from aqaa.train.vocoder import train_vocoder
    from aqaa.vocoder.discriminator import VocoderDiscriminator, discriminator_loss, generator_losses

    out, voc = trained
    over = ["steps=6", "batch=2", "crop_groups=6", "log_every=1", "ckpt_every=2", "warmup=1", f"init={out / 'model'}",
            "adv_weight=1.0", "disc_warmup=2", "disc_segment=4000", "disc_channels=4"]
    train_vocoder(tiny_corpus["data"], tiny_corpus["tokens"], tmp_path / "a", "tiny", over)
    train_vocoder(tiny_corpus["data"], tiny_corpus["tokens"], tmp_path / "b", "tiny", over, stop_after=3)
    assert (tmp_path / "b/checkpoint/companion.safetensors").exists()
    train_vocoder(tiny_corpus["data"], tiny_corpus["tokens"], tmp_path / "b", "tiny", over)
    rows = {k: [json.loads(x) for x in (tmp_path / k / "metrics.jsonl").read_text().splitlines()] for k in "ab"}
    assert len(rows["a"]) == 6 and [r["loss"] for r in rows["b"]] == pytest.approx([r["loss"] for r in rows["a"]],
                                                                                   abs=1e-5)
    assert [r["disc"] for r in rows["b"]] == pytest.approx([r["disc"] for r in rows["a"]], abs=1e-5)
    assert all(r["adv"] == 0 for r in rows["a"][:2]) and all(r["adv"] > 0 and r["fm"] > 0 for r in rows["a"][2:])
    # the losses themselves: a perfect generator has zero feature-matching loss; real towards 1, fake towards 0
    torch.manual_seed(0)
    d = VocoderDiscriminator(channels=4)
    x = torch.randn(2, 4000) * 0.1
    outs = d(x)
    assert generator_losses(outs, outs)[1].item() == 0.0
    ones = [(torch.ones_like(s), f) for s, f in outs]
    zeros = [(torch.zeros_like(s), f) for s, f in outs]
    assert discriminator_loss(ones, zeros).item() == 0.0 and discriminator_loss(zeros, ones).item() == 2.0


def test_periodicity_floor_loss_is_zero_for_a_periodic_wave_and_large_for_noise():
    from aqaa.train.vocoder import periodicity_floor_loss

    frames = 99
    pulses, noise = _pulses_and_noise()
    f0 = torch.full((1, frames), 100.0)
    voiced = torch.ones(1, frames)
    assert periodicity_floor_loss(pulses, f0, voiced, 0.8).item() < 0.01
    assert periodicity_floor_loss(noise, f0, voiced, 0.8).item() > 0.6
    assert periodicity_floor_loss(noise, f0, torch.zeros(1, frames), 0.8).item() == 0.0  # only voiced frames count


def test_periodicity_ceiling_loss_is_zero_for_noise_and_large_for_a_periodic_wave():
    from aqaa.train.vocoder import periodicity_ceiling_loss

    pulses, noise = _pulses_and_noise()
    f0, frames = torch.full((1, 99), 100.0), torch.ones(1, 99)
    assert periodicity_ceiling_loss(noise, f0, frames, 0.4).item() < 0.01
    assert periodicity_ceiling_loss(pulses, f0, frames, 0.4).item() > 0.5
    assert periodicity_ceiling_loss(pulses, f0, torch.zeros(1, 99), 0.4).item() == 0.0


def test_head_voicing_drives_the_source_as_at_inference(trained, tiny_corpus, tmp_path):
    """f0=(Hz, None) voices the harmonic source where the head decides, as inference does; training that way with
    the floor and ceiling runs and resumes exactly."""
    from aqaa.data.tokens import read_tokens

    _, voc = trained
    row = next(iter(read_tokens(tiny_corpus["tokens"]).values()))
    lin, sem = torch.tensor(row["linguistic"])[None], torch.tensor(row["semantic"])[None]
    with torch.no_grad():
        head_f0, logit = voc.pitch(voc.hidden(lin, sem)[0])
        hz = torch.full_like(head_f0, 110.0)
        assert torch.equal(voc(lin, sem, f0=(hz, None)), voc(lin, sem, f0=(hz, (logit > 0).float())))
    over = ["steps=4", "batch=2", "crop_groups=6", "log_every=1", "ckpt_every=2", "warmup=2", "source_voicing=head",
            "periodicity_weight=1", "periodicity_floor=0.8", "periodicity_ceiling=0.4"]
    la, lb = _losses_straight_and_resumed(tiny_corpus, tmp_path, over, stop_after=2)
    assert len(la) == 4 and np.isfinite(la).all() and lb == pytest.approx(la, abs=1e-5)


@pytest.mark.parametrize("over, match", [(["periodicity_floor=0.8"], "periodicity_weight"),
                                         (["periodicity_floor=1.5", "periodicity_weight=1"], r"\[0, 1\]"),
                                         (["source_voicing=model"], "source_voicing"),
                                         (["periodicity_ceiling=0.4", "periodicity_weight=1"], "source_voicing=head")])
def test_inconsistent_periodicity_options_are_refused(tiny_corpus, tmp_path, over, match):
    from aqaa.train.vocoder import train_vocoder

    with pytest.raises(ValueError, match=match):
        train_vocoder(tiny_corpus["data"], tiny_corpus["tokens"], tmp_path / "x", "tiny", ["steps=2", *over])


def test_gain_augmentation_relevels_audio_and_reencodes_tokens(tiny_corpus, tmp_path):
    import random

    from aqaa.data.tokens import read_tokens
    from aqaa.tokenizer.model import DualTokenizer
    from aqaa.train.vocoder import ClipBank, train_vocoder, vocoder_clips

    tokens = read_tokens(tiny_corpus["tokens"])
    rels = vocoder_clips(tiny_corpus["data"], tokens, "joe")
    tok = DualTokenizer.load(tiny_corpus["tokenizer"])
    bank = ClipBank(tiny_corpus["data"], rels, tokens, encode_semantic=tok.encode_semantic, gain_db=10.0)
    # at 0 dB the re-encoding gives the token cache back: the bank's audio is what the cache was made from
    bank.gain_db = 1e-9
    for i in range(len(rels)):
        audio, sem = bank.regain(i, random.Random(i))
        assert np.array_equal(sem, bank.sem[i])
    bank.gain_db = 10.0
    levels, changed = [], 0
    for i in range(len(rels)):
        audio, sem = bank.regain(i, random.Random(100 + i))
        assert np.abs(audio).max() <= 0.99 + 1e-6
        levels.append(20 * np.log10(np.sqrt(np.mean(audio ** 2)) / np.sqrt(np.mean(bank.audio[i] ** 2))))
        changed += not np.array_equal(sem, bank.sem[i])
    assert max(np.abs(levels)) <= 10 + 1e-3 and np.std(levels) > 1 and changed > 0
    over = ["steps=4", "batch=2", "crop_groups=6", "log_every=1", "ckpt_every=2", "warmup=2", "gain_db=8"]
    with pytest.raises(ValueError, match="tokenizer"):
        train_vocoder(tiny_corpus["data"], tiny_corpus["tokens"], tmp_path / "x", "tiny", over)
    over.append(f"tokenizer={tiny_corpus['tokenizer']}")
    la, lb = _losses_straight_and_resumed(tiny_corpus, tmp_path, over, stop_after=2)
    assert len(la) == 4 and np.isfinite(la).all() and lb == pytest.approx(la, abs=1e-5)  # resumes exactly


def test_detokenize_cli(trained, tiny_corpus, tmp_path):
    out, _ = trained
    row = json.loads(tiny_corpus["tokens"].read_text().splitlines()[0])
    good = tmp_path / "t.json"
    good.write_text(json.dumps({"linguistic": row["linguistic"], "semantic": row["semantic"],
                                "duration_s": row["duration_s"]}))
    cmd = [sys.executable, "-m", "aqaa.cli", "detokenize", "--vocoder", str(out / "model")]
    ok = subprocess.run(cmd + [str(good), "-o", str(tmp_path / "o.wav")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    y, rate = sf.read(tmp_path / "o.wav")
    assert rate == 16_000 and abs(len(y) / rate - row["duration_s"]) < 0.01
    for bad in ('{"linguistic": [1, 2, 3], "semantic": [1]}', "not json", '{"linguistic": [1, 2], "semantic": '
                '[1, 2, 999999]}'):
        (tmp_path / "bad.json").write_text(bad)
        r = subprocess.run(cmd + [str(tmp_path / "bad.json"), "-o", str(tmp_path / "x.wav")], capture_output=True,
                           text=True)
        assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.startswith("aqaa: error:")
    assert not (tmp_path / "x.wav").exists()


def test_presets_are_configs_not_code():
    assert PRESETS["tiny"].dim < PRESETS["default"].dim
    assert TokenVocoder(PRESETS["tiny"]).cfg.n_fft == 4 * TokenVocoder(PRESETS["tiny"]).cfg.hop


def test_pulse_train_has_the_asked_pitch_and_chunks_exactly():
    """The harmonic source: Praat hears the F0 it was given, and chunked calls (state carried) give the one-shot
    samples, phase included."""
    from aqaa.audio.measure import median_f0
    from aqaa.vocoder.model import pulse_train

    f0 = torch.linspace(90.0, 140.0, 120)[None]
    voiced = torch.ones(1, 120)
    whole, _ = pulse_train(f0, voiced, None, 160, 16_000, 7600.0)
    parts, state = [], None
    for a, b in ((0, 7), (7, 8), (8, 60), (60, 120)):
        x, state = pulse_train(f0[:, a:b], voiced[:, a:b], state, 160, 16_000, 7600.0)
        parts.append(x)
    assert torch.allclose(torch.cat(parts, 1), whole, atol=1e-3)
    steady, _ = pulse_train(torch.full((1, 100), 110.0), torch.ones(1, 100), None, 160, 16_000, 7600.0)
    assert abs(median_f0(steady[0].numpy() / 70, 16_000) - 110.0) < 0.5


def test_context_gru_streams_exactly_and_carries_its_state():
    """With `context`, a GRU over the semantic tokens feeds every frame: its hidden state is part of the streaming
    state, so chunked output equals offline output and a copied state continues identically."""
    from dataclasses import replace

    torch.manual_seed(0)
    voc = TokenVocoder(replace(PRESETS["tiny"], context=8)).eval()
    rng = np.random.default_rng(0)
    lin, sem = rng.integers(0, 32, 2 * 9), rng.integers(0, 64, 3 * 9)
    offline = voc.synthesize(lin, sem)
    streamed, _ = _stream(voc, lin, sem, 2)
    assert np.abs(streamed - offline).max() < 1e-4 * max(1.0, np.abs(offline).max())
    s = voc.start()
    s.step(lin[:4], sem[:6])
    assert s.state.conv[-1].shape == (1, 1, 8)  # the GRU's hidden state travels with the conv state
    fork = s.state.copy()
    a = s.step(lin[4:6], sem[6:9])
    s.state = fork
    assert np.array_equal(a, s.step(lin[4:6], sem[6:9]))
    # the context reaches past the convolutions' window: a token 8 groups back still changes this group's audio
    other = sem.copy()
    other[0] = (other[0] + 1) % 64
    changed = voc.synthesize(lin, other)
    window = FRAMES_PER_GROUP * 8 * 160
    assert np.abs(changed[window:] - offline[window:]).max() > 0


def test_extreme_weight_draws_far_pitched_or_levelled_clips_more(tiny_corpus):
    import random

    from aqaa.data.tokens import read_tokens
    from aqaa.train.vocoder import ClipBank, vocoder_clips

    tokens = read_tokens(tiny_corpus["tokens"])
    rels = vocoder_clips(tiny_corpus["data"], tokens, "joe")
    with pytest.raises(ValueError, match="pitch"):
        ClipBank(tiny_corpus["data"], rels, tokens, extreme_weight=1.0)
    bank = ClipBank(tiny_corpus["data"], rels, tokens, pitch=True, extreme_weight=4.0)
    w = np.diff([0.0] + bank.cum_weights)
    assert len(w) == len(rels) and (w >= 1).all() and w.max() > w.min()
    level = [20 * np.log10(np.sqrt(np.mean(a ** 2)) + 1e-10) for a in bank.audio]
    far = int(np.argmax(np.abs(np.array(level) - np.median(level))))  # the loudest/softest clip weighs > median
    assert w[far] > np.median(w)
    rng = random.Random(0)
    draws = [rng.choices(range(len(w)), cum_weights=bank.cum_weights)[0] for _ in range(4000)]
    assert abs(np.mean(np.array(draws) == int(np.argmax(w))) - w.max() / w.sum()) < 0.03


def test_periodicity_tells_pulses_from_noise_frame_by_frame():
    """The periodicity loss's measure: ~1 on frames of a pulse train at the given pitch, ~0 on noise, aligned with
    the F0 frames ((t + 1) hop), and differentiable; its loss is 0 against itself and counts voiced frames only."""
    from aqaa.train.vocoder import periodicity, periodicity_loss
    from aqaa.vocoder.model import pulse_train

    torch.manual_seed(0)
    pulses, _ = pulse_train(torch.full((1, 100), 95.0), torch.ones(1, 100), None, 160, 16_000, 7600.0)
    y = torch.cat([torch.randn(1, 50 * 160) * pulses.std(), pulses[:, 50 * 160:]], 1).requires_grad_()
    p = periodicity(y, torch.full((1, 100), 95.0))
    assert p.shape == (1, 100)
    assert p[0, 5:45].abs().max() < 0.25 and p[0, 55:95].min() > 0.9  # noise first half, pulses second
    voiced = (torch.arange(100) >= 50).float()[None]
    assert periodicity_loss(y, y.detach(), torch.full((1, 100), 95.0), voiced).item() < 1e-5
    loss = periodicity_loss(y, pulses, torch.full((1, 100), 95.0), 1 - voiced)  # the noise half should be periodic
    loss.backward()
    assert loss.item() > 0.7 and y.grad[0, : 45 * 160].abs().sum() > 0
