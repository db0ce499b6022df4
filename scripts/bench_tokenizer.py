"""Tokenizer benchmark and probes -> reports/tokenizer.{json,md}.

    .venv/bin/python scripts/bench_tokenizer.py --tokenizer TOK_DIR --data data/spokenqa [--probe-steps 1500]

- throughput (offline, both streams) in x real time, per stream; streaming latency per 120 ms chunk;
- streaming vs offline token agreement;
- codebook health per stream: usage perplexity and dead codes, on the training audio and on held-out audio;
- probes on held-out speech: content (a CTC character probe: CER) and prosody (logistic regression on a bag of
  codes: fast/slow, loud/soft, high/low accuracy) for each stream; the prosody probe is run twice, on the bag alone
  and on the bag plus two statistics of how fast the stream moves (how far each token's code vector is from the
  previous one, and how often the code changes), because a bag of codes cannot see tempo by construction; and
  a third time by a small convolutional classifier on the token sequence (the same net for both streams).
  `--prosody-only` runs just the prosody probes on the labelled renderings (minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from aqaa.lm.heard import CHARS, ctc_greedy, ctc_targets
from aqaa.tokenizer.health import codebook_health
from aqaa.tokenizer.model import DualTokenizer, stream_encode

torch.set_num_threads(2)


def load(path: Path) -> np.ndarray:
    return sf.read(path, dtype="float32")[0]


def renderings(data: Path, split: str) -> list[dict]:
    """Every rendering in a split, with text and, where known, a prosody label (axis, value)."""
    rows = []
    for line in (data / f"{split}.jsonl").read_text().splitlines():
        rec = json.loads(line)
        for turn in rec["turns"]:
            prop = turn.get("query_property")
            rows.append({**turn["query"], "label": (prop["axis"], {"quiet": "soft"}.get(prop["value"], prop["value"]))
                         if prop else None})
            ctl = turn.get("control")
            rows.append({**turn["answer"], "label": (ctl["axis"], ctl["direction"]) if ctl else None})
            if ctl:
                opp = {"slow": "fast", "fast": "slow", "loud": "soft", "soft": "loud", "high": "low", "low": "high"}
                rows.append({**turn["opposite"], "label": (ctl["axis"], opp[ctl["direction"]])})
                rows.append({**turn["neutral"], "label": None})
    sent = data / "pretrain" / "sentences.jsonl"
    if split == "train" and sent.exists():
        rows += [{**json.loads(x), "label": None} for x in sent.read_text().splitlines()]
    return rows


def ctc_probe(train: list[tuple[np.ndarray, str]], test: list[tuple[np.ndarray, str]], k: int, up: int,
              steps: int, seed: int = 0) -> float:
    """A small BiGRU CTC probe, tokens -> characters; returns test CER (greedy decoding)."""
    import jiwer

    from aqaa.eval.text import normalize

    torch.manual_seed(seed)
    emb = torch.nn.Embedding(k, 128)
    rnn = torch.nn.GRU(128, 128, num_layers=2, batch_first=True, bidirectional=True)
    out = torch.nn.Linear(256, len(CHARS) + 1)
    params = [*emb.parameters(), *rnn.parameters(), *out.parameters()]
    opt = torch.optim.Adam(params, lr=2e-3)
    ctc = torch.nn.CTCLoss(zero_infinity=True)
    rng = np.random.default_rng(seed)

    def forward(batch):
        lens = torch.tensor([len(c) * up for c, _ in batch])
        x = torch.nn.utils.rnn.pad_sequence([torch.as_tensor(c).repeat_interleave(up) for c, _ in batch], batch_first=True)
        h, _ = rnn(emb(x))
        return out(h).log_softmax(-1), lens

    for _ in tqdm(range(steps), desc=f"ctc probe k={k}", leave=False):
        batch = [train[i] for i in rng.integers(0, len(train), 16)]
        logp, lens = forward(batch)
        targets = [torch.tensor(ctc_targets(t)) for _, t in batch]
        loss = ctc(logp.transpose(0, 1), torch.cat(targets), lens, torch.tensor([len(t) for t in targets]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    refs, hyps = [], []
    with torch.no_grad():
        for i in range(0, len(test), 32):
            batch = test[i : i + 32]
            logp, lens = forward(batch)
            for b, (_, text) in enumerate(batch):
                refs.append(normalize(text))
                hyps.append(ctc_greedy(logp[b, : lens[b]].argmax(-1).tolist()).strip() or "-")
    return float(jiwer.cer(refs, hyps))


def dynamics(codes: np.ndarray, vectors: np.ndarray, scale: float) -> np.ndarray:
    """How fast a token stream moves: mean distance between consecutive code vectors (in units of the codebook's
    mean pairwise distance) and the fraction of tokens whose code differs from the previous one."""
    if len(codes) < 2:
        return np.zeros(2)
    step = np.linalg.norm(np.diff(vectors[codes], axis=0), axis=1)
    return np.array([step.mean() / scale, float((np.diff(codes) != 0).mean())])


def sequence_probe(train: list[tuple[np.ndarray, int]], test: list[tuple[np.ndarray, int]], k: int,
                   steps: int = 300, seed: int = 0) -> float:
    """Held-out accuracy of a small learned classifier on the token sequence itself: embedding (32), two causal-free
    convolutions over 5 tokens, mean + max pooling over time. The same net for both streams, so each can show what
    its sequence carries (tempo included) instead of what hand-made statistics expose."""
    import torch.nn as nn

    torch.manual_seed(seed)
    net = nn.ModuleDict({"emb": nn.Embedding(k, 32), "conv": nn.Sequential(
        nn.Conv1d(32, 64, 5, padding=2), nn.ReLU(), nn.Conv1d(64, 64, 5, padding=2), nn.ReLU()),
        "out": nn.Linear(128, 2)})
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-2)

    def logits(rows):
        width = max(len(c) for c, _ in rows)
        x = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), 1, width)
        for i, (c, _) in enumerate(rows):
            x[i, : len(c)], mask[i, 0, : len(c)] = torch.as_tensor(c), 1
        h = net["conv"](net["emb"](x).transpose(1, 2)) * mask
        pooled = torch.cat([h.sum(2) / mask.sum(2), h.masked_fill(mask == 0, -1e4).amax(2)], 1)
        return net["out"](pooled)

    rng = np.random.default_rng(seed)
    for _ in range(steps):
        batch = [train[i] for i in rng.integers(0, len(train), min(32, len(train)))]
        loss = nn.functional.cross_entropy(logits(batch), torch.tensor([y for _, y in batch]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = logits(test).argmax(1).numpy()
    return float((pred == np.array([y for _, y in test])).mean())


def prosody_probe(train, test, vectors: np.ndarray) -> dict:
    """Logistic regression on normalized code histograms (`accuracy`) and on histograms plus the standardized
    `dynamics` (`accuracy_dynamics`), and the `sequence_probe` (`accuracy_sequence`); accuracy per axis on
    held-out renderings."""
    from sklearn.linear_model import LogisticRegression

    k = len(vectors)
    sample = vectors[np.random.default_rng(0).integers(0, k, (2, 2000))]
    scale = float(np.linalg.norm(sample[0] - sample[1], axis=1).mean()) or 1.0
    res = {}
    for axis, values in (("rate", ("slow", "fast")), ("volume", ("loud", "soft")), ("pitch", ("high", "low"))):
        def xy(rows):
            rows = [(c, lab) for c, lab in rows if lab and lab[0] == axis]
            bags = np.array([np.bincount(c, minlength=k) / max(len(c), 1) for c, _ in rows]).reshape(len(rows), k)
            dyn = np.array([dynamics(c, vectors, scale) for c, _ in rows]).reshape(len(rows), 2)
            return bags, dyn, np.array([values.index(lab[1]) for _, lab in rows])

        btr, dtr, ytr = xy(train)
        bte, dte, yte = xy(test)
        if len(set(ytr)) < 2 or len(yte) == 0:
            continue
        mu, sd = dtr.mean(0), dtr.std(0) + 1e-9
        row = {"n_test": int(len(yte))}
        for name, xtr, xte in (("accuracy", btr, bte),
                               ("accuracy_dynamics", np.hstack([btr, (dtr - mu) / sd]), np.hstack([bte, (dte - mu) / sd]))):
            clf = LogisticRegression(max_iter=2000, C=1.0).fit(xtr, ytr)
            row[name] = round(float((clf.predict(xte) == yte).mean()), 3)
        seq = [[(c, values.index(lab[1])) for c, lab in rows if lab and lab[0] == axis] for rows in (train, test)]
        row["accuracy_sequence"] = round(sequence_probe(*seq, k), 3)
        res[axis] = row
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--probe-steps", type=int, default=1500)
    ap.add_argument("--out", default="reports")
    ap.add_argument("--skip-probes", action="store_true", help="speed and codebook health only (minutes, not half an hour)")
    ap.add_argument("--prosody-only", action="store_true",
                    help="only the prosody probes, on the labelled renderings -> OUT/tokenizer_prosody.json")
    args = ap.parse_args()
    tok = DualTokenizer.load(args.tokenizer)
    data = Path(args.data)
    train_rows, test_rows = renderings(data, "train"), renderings(data, "test") + renderings(data, "valid")
    kl, ks = tok.cfg.linguistic.codes, tok.cfg.semantic.codes
    if args.prosody_only:
        prosody_only(tok, args.tokenizer, data, train_rows, test_rows, Path(args.out))
        return

    # warm-up, then throughput on held-out clips
    tok.encode(load(data / test_rows[0]["audio"]))
    audio_s = t_lin = t_sem = 0.0
    from aqaa.tokenizer.interleave import pad_to_groups

    test_codes = []
    for r in tqdm(test_rows, desc="encode held-out"):
        x = load(data / r["audio"])
        padded = pad_to_groups(x)
        t0 = time.perf_counter()
        lin = tok.encode_linguistic(padded)
        t1 = time.perf_counter()
        sem = tok.encode_semantic(padded)
        t2 = time.perf_counter()
        t_lin, t_sem, audio_s = t_lin + t1 - t0, t_sem + t2 - t1, audio_s + len(x) / 16000
        test_codes.append((lin, sem, r))
    train_codes = [(tok.encode_linguistic(pad_to_groups(x := load(data / r["audio"]))),
                    tok.encode_semantic(pad_to_groups(x)), r) for r in tqdm(train_rows, desc="encode train")]

    # streaming: latency per 120 ms chunk and agreement with offline
    lat, agree_l, agree_s = [], [], []
    for lin, sem, r in test_codes[:40]:
        x = load(data / r["audio"])
        enc = tok.start()
        for i in range(0, len(x), 1920):
            t0 = time.perf_counter()
            enc.step(x[i : i + 1920])
            lat.append(1000 * (time.perf_counter() - t0))
        on = stream_encode(tok, x, 1920)
        agree_l.append(np.mean(on.linguistic == lin))
        agree_s.append(np.mean(on.semantic == sem))

    report = {
        "tokenizer": str(args.tokenizer), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "held_out_audio_s": round(audio_s, 1),
        "throughput_x_realtime": {"both": round(audio_s / (t_lin + t_sem), 1), "linguistic": round(audio_s / t_lin, 1),
                                  "semantic": round(audio_s / t_sem, 1)},
        "streaming": {"chunk_ms": 120, "latency_ms_p50": round(float(np.percentile(lat, 50)), 1),
                      "latency_ms_p95": round(float(np.percentile(lat, 95)), 1),
                      "lookahead_ms": 120 * tok.cfg.stream_lookahead_groups,
                      "agreement_linguistic": round(float(np.mean(agree_l)), 4),
                      "agreement_semantic": round(float(np.mean(agree_s)), 4)},
        "health": {
            name: {"train": codebook_health([c[idx] for c in train_codes], k),
                   "held_out": codebook_health([c[idx] for c in test_codes], k)}
            for name, idx, k in (("linguistic", 0, kl), ("semantic", 1, ks))
        },
    }
    probes = {}
    code_vectors = stream_code_vectors(tok)
    for name, idx, k, up in () if args.skip_probes else (("linguistic", 0, kl, 3), ("semantic", 1, ks, 2)):
        tr = [(c[idx], c[2]["text"]) for c in train_codes]
        te = [(c[idx], c[2]["text"]) for c in test_codes]
        probes[name] = {
            "content_cer": round(ctc_probe(tr, te, k, up, args.probe_steps), 4),
            "prosody": prosody_probe([(c[idx], c[2]["label"]) for c in train_codes],
                                     [(c[idx], c[2]["label"]) for c in test_codes], code_vectors[name]),
        }
    report["probes"] = probes
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    (out / "tokenizer.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "tokenizer.md").write_text(markdown(report))
    print(markdown(report))


def stream_code_vectors(tok: DualTokenizer) -> dict[str, np.ndarray]:
    """The vector behind each code of each stream (k-means centroids; the VQ/FSQ codebook)."""
    return {"linguistic": tok.linguistic.centroids.numpy(), "semantic": tok.semantic.code_vectors().detach().numpy()}


def prosody_only(tok: DualTokenizer, folder: str, data: Path, train_rows: list[dict], test_rows: list[dict],
                 out: Path) -> None:
    from aqaa.tokenizer.interleave import pad_to_groups

    vectors = stream_code_vectors(tok)
    encoded = {}
    for part, rows in (("train", train_rows), ("test", test_rows)):
        rows = [r for r in rows if r["label"]]
        codes = [(tok.encode_linguistic(pad_to_groups(x := load(data / r["audio"]))),
                  tok.encode_semantic(pad_to_groups(x))) for r in tqdm(rows, desc=f"encode labelled {part}")]
        encoded[part] = (codes, [r["label"] for r in rows])
    report = {"tokenizer": folder, "probes": {}}
    for idx, name in enumerate(("linguistic", "semantic")):
        tr = [(c[idx], lab) for c, lab in zip(*encoded["train"])]
        te = [(c[idx], lab) for c, lab in zip(*encoded["test"])]
        report["probes"][name] = prosody_probe(tr, te, vectors[name])
        print(name, report["probes"][name], flush=True)
    out.mkdir(exist_ok=True)
    (out / "tokenizer_prosody.json").write_text(json.dumps(report, indent=1) + "\n")


def markdown(r: dict) -> str:
    t, s, h, p = r["throughput_x_realtime"], r["streaming"], r["health"], r["probes"]
    lines = [
        "# Dual-codebook tokenizer: benchmark and probes", "",
        f"Measured by `scripts/bench_tokenizer.py` on {r['cores']} CPU cores over {r['held_out_audio_s']} s of held-out "
        "speech (SpokenQA test + valid splits: held-out voices and phrasings).", "",
        "| measure | value |", "|---|---|",
        f"| offline throughput, both streams | {t['both']} x real time |",
        f"| linguistic only / semantic only | {t['linguistic']} x / {t['semantic']} x |",
        f"| streaming step per 120 ms chunk, p50 / p95 | {s['latency_ms_p50']} / {s['latency_ms_p95']} ms |",
        f"| linguistic look-ahead when streaming | {s['lookahead_ms']} ms |",
        f"| streaming = offline tokens, linguistic / semantic | {100 * s['agreement_linguistic']:.1f}% / {100 * s['agreement_semantic']:.1f}% |",
        "", "Codebook health", "", "| stream | data | tokens | usage perplexity | codes | dead |", "|---|---|---|---|---|---|",
    ]
    for stream in ("linguistic", "semantic"):
        for part in ("train", "held_out"):
            v = h[stream][part]
            lines.append(f"| {stream} | {part} | {v['tokens']} | {v['perplexity']} | {v['codes']} | {100 * v['dead_fraction']:.1f}% |")
    lines += ["", "Probes on held-out speech (each stream alone); prosody accuracy as bag of codes / bag + stream "
              "dynamics / sequence classifier", "",
              "| stream | content: CTC character error rate (lower is better) | rate acc. | volume acc. | pitch acc. |",
              "|---|---|---|---|---|"]
    for stream in [s for s in ("linguistic", "semantic") if s in p]:
        pr = p[stream]["prosody"]
        acc = [" / ".join(f"{pr[a][key]:.3f}" for key in ("accuracy", "accuracy_dynamics", "accuracy_sequence")
                          if key in pr[a]) + f" (n={pr[a]['n_test']})" if a in pr else "-"
               for a in ("rate", "volume", "pitch")]
        lines.append(f"| {stream} | {p[stream]['content_cer']:.3f} | " + " | ".join(acc) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
