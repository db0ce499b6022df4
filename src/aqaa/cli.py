"""The `aqaa` command line: thin wiring of the pipeline stages (SPEC, Command-line contract)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from aqaa.errors import AqaaInputError


def _answer(args: argparse.Namespace, engine: str) -> None:
    from aqaa.serve.chat import chat

    summary = chat(args.inputs, args.output, model=getattr(args, "model", None), engine=engine)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{summary['text']}\n[{summary['engine']}] first audio {summary['first_audio_ms']:.0f} ms, "
              f"{summary['audio_s']:.2f} s of audio, RTF {summary['rtf']:.3f} -> {args.output}")


def _cmd_chat(args: argparse.Namespace) -> None:
    _answer(args, "auto")


def _cmd_cascade(args: argparse.Namespace) -> None:
    _answer(args, "cascade")


def _cmd_data_synth(args: argparse.Namespace) -> None:
    from aqaa.data.synth import synth

    summary = synth(args.out, args.n, args.seed, sentences=args.sentences, text_lines=args.text_lines,
                    hearing=args.hearing, word_lists=args.word_lists, answers=args.answers, workers=args.workers)
    print(json.dumps(summary))


def _cmd_data_check(args: argparse.Namespace) -> None:
    from aqaa.data.check import check, markdown

    report = check(args.dir, tuple(args.splits))
    out = Path(args.out or args.dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "data_check.json").write_text(json.dumps(report, indent=1))
    (out / "data_check.md").write_text(markdown(report))
    print(markdown(report))


def _cmd_train_tokenizer(args: argparse.Namespace) -> None:
    from aqaa.train.tokenizer import train_tokenizer

    print(f"tokenizer saved to {train_tokenizer(args.data, args.out, args.preset, args.overrides)}")


def _cmd_data_tokens(args: argparse.Namespace) -> None:
    from aqaa.data.tokens import encode_corpus

    print(f"tokens written to {encode_corpus(args.data, args.tokenizer, args.out)}")


def _cmd_data_pack(args: argparse.Namespace) -> None:
    from aqaa.data.packed import TokenIndex, pack
    from aqaa.data.tokens import check_token_inputs
    from aqaa.lm.model import PRESETS
    from aqaa.lm.vocab import Vocab
    from aqaa.train.lm import fresh_model, iter_parts

    if args.preset not in PRESETS:
        raise AqaaInputError(f"unknown preset {args.preset!r}; one of {sorted(PRESETS)}")
    data = Path(args.data)
    check_token_inputs(args.tokens, data)
    vocab = Vocab.load(args.lm) if args.lm else fresh_model(PRESETS[args.preset], data, args.seed).vocab
    rhythm = PRESETS[args.preset].rhythm
    out = pack(iter_parts(data, TokenIndex(args.tokens), vocab, rhythm), vocab, args.out, args.shard_sequences)
    print(f"pack written to {out}: pass it as --tokens to `aqaa train pretrain` / `sft`")


def _cmd_train_lm(args: argparse.Namespace) -> None:
    from aqaa.train.lm import stage_config, train_stage

    stage = "sft" if args.train_cmd == "sft" else f"stage{args.stage}"
    cfg = stage_config(stage, args.preset, args.overrides)
    print(f"{stage} model saved to {train_stage(cfg, args.data, args.tokens, args.out)}")


def _cmd_train_vocoder(args: argparse.Namespace) -> None:
    from aqaa.train.vocoder import train_vocoder

    print(f"vocoder saved to {train_vocoder(args.data, args.tokens, args.out, args.preset, args.overrides)}")


def _cmd_detokenize(args: argparse.Namespace) -> None:
    from aqaa.audio.io import save_wav
    from aqaa.audio.limiter import Limiter
    from aqaa.vocoder.io import load_default_vocoder, read_tokens_json

    lin, sem, duration = read_tokens_json(args.input)
    voc = load_default_vocoder(args.vocoder)
    if max(lin) >= voc.cfg.l_codes or max(sem) >= voc.cfg.s_codes or min(lin + sem) < 0:
        raise AqaaInputError(f"{args.input}: token ids outside this vocoder's codebooks "
                             f"({voc.cfg.l_codes} linguistic, {voc.cfg.s_codes} semantic)")
    samples = Limiter(voc.cfg.sample_rate)(voc.synthesize(lin, sem, duration))  # loud tokens: no clipped tops
    save_wav(args.output, samples, voc.cfg.sample_rate)
    print(f"{len(samples) / voc.cfg.sample_rate:.2f} s -> {args.output}")


def _cmd_train_dpo(args: argparse.Namespace) -> None:
    from aqaa.train.dpo import train_dpo

    print(f"DPO model saved to {train_dpo(args.sft, args.data, args.tokens, args.out, args.overrides)}")


def _cmd_train_merge(args: argparse.Namespace) -> None:
    from aqaa.train.merge import merge_and_select

    out = merge_and_select(args.sft, args.dpo, args.base, args.data, args.tokens, args.out, args.limit)
    print(f"merged model saved to {out}\n{(Path(args.out) / 'done.json').read_text()}")


def _cmd_recipe(args: argparse.Namespace) -> None:
    from aqaa.train.recipe import Recipe, print_status

    recipe = Recipe(args.preset, args.out or f"runs/recipe-{args.preset}", args.data, args.codec)
    print_status(recipe)
    if not args.status:
        recipe.run(args.until)
        print_status(recipe)
    print(json.dumps({r["stage"]: r["state"] for r in recipe.status()}))


def _cmd_serve(args: argparse.Namespace) -> None:
    from aqaa.serve.server import serve

    serve(args.host, args.port, args.model, args.engine)


def _cmd_tokenize(args: argparse.Namespace) -> None:
    from aqaa.audio.io import load_audio
    from aqaa.tokenizer.model import load_default_tokenizer

    audio = load_audio(args.input)
    tokens = load_default_tokenizer(args.tokenizer).encode(audio.samples).to_dict()
    if args.json:
        print(json.dumps(tokens))
    else:
        print(f"{tokens['duration_s']:.2f} s -> {len(tokens['linguistic'])} linguistic + {len(tokens['semantic'])} "
              f"semantic tokens\ninterleaved: {tokens['interleaved'][:20]} ...")


def _cmd_eval(args: argparse.Namespace) -> None:
    from aqaa.eval.harness import read_manifest, run_eval, with_items
    from aqaa.eval.report import write_report

    if not Path(args.manifest).is_file():
        raise AqaaInputError(f"{args.manifest}: no such manifest")
    from aqaa.serve.chat import open_session

    factory = lambda: open_session(args.model, args.engine, args.listen_ms)  # noqa: E731
    records = run_eval(args.manifest, args.out, factory, args.engine, args.limit)
    runs = {args.label or (records[0].get("engine", args.engine) if records else args.engine): records}
    items = read_manifest(args.manifest)[1]
    for other in args.compare or []:
        label, _, folder = other.rpartition("=") if "=" in other else ("", "", other)
        recs = [json.loads(p.read_text()) for p in sorted(Path(folder, "items").glob("*.json"))]
        if recs:
            runs[label or recs[0].get("engine", folder)] = with_items(recs, items)
    summary = write_report(args.out, runs, title=f"aqaa eval: {args.manifest}")
    print((Path(args.out) / "report.md").read_text())
    print(json.dumps(summary))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aqaa", description="Audio Query -> Audio Answer speech-to-speech toolkit")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("chat", help="answer spoken turns of one conversation with speech")
    c.add_argument("inputs", nargs="+", help="query audio; several files are successive user turns")
    c.add_argument("-o", "--output", required=True, help="wav that receives the answer to the last turn")
    c.add_argument("--model", help="model folder (default: the shipped model)")
    c.add_argument("--json", action="store_true", help="print one JSON summary line")
    c.set_defaults(func=_cmd_chat)

    c = sub.add_parser("cascade", help="the baseline: Whisper tiny.en -> SmolLM2-135M -> Piper joe")
    c.add_argument("inputs", nargs="+")
    c.add_argument("-o", "--output", required=True)
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=_cmd_cascade)

    e = sub.add_parser("eval", help="run an engine on a manifest and judge its spoken answers (resumable)")
    e.add_argument("--manifest", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--engine", default="auto", choices=["auto", "cascade"],
                   help="auto: what `aqaa chat` uses (the shipped model, else the cascade)")
    e.add_argument("--model", default=None)
    e.add_argument("--limit", type=int, default=None, help="only the first N items")
    e.add_argument("--compare", nargs="*", help="other eval output folders to report side by side (LABEL=DIR names "
                                                "a column)")
    e.add_argument("--label", help="column name of this run in the report (default: the engine)")
    e.add_argument("--listen-ms", type=int, default=None,
                   help="aqaa hears each query in pieces of N ms as if spoken, first audio timed from its end")
    e.set_defaults(func=_cmd_eval)

    t = sub.add_parser("tokenize", help="audio -> linguistic + semantic tokens (SPEC JSON with --json)")
    t.add_argument("input")
    t.add_argument("--tokenizer", help="tokenizer folder (default: the shipped one)")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=_cmd_tokenize)

    t = sub.add_parser("recipe", help="the whole pipeline: data -> tokenizer -> vocoder -> LM stages -> DPO -> merge "
                                      "-> eval (each stage skipped when done, resumed when killed)")
    from aqaa.train.recipe import RECIPES  # plain dataclasses: no torch at parse time

    t.add_argument("--preset", default="default", help=" | ".join(RECIPES))
    t.add_argument("--out", help="run folder (default: runs/recipe-PRESET)")
    t.add_argument("--data", help="use this SpokenQA folder (default: OUT/data, synthesized)")
    t.add_argument("--codec", help="copy the tokenizer and vocoder from this folder (\"shipped\": the package's "
                                   "own) instead of training them: only the LM is trained")
    t.add_argument("--until", help="stop after this stage")
    t.add_argument("--status", action="store_true", help="only print where the recipe stands")
    t.set_defaults(func=_cmd_recipe)

    t = sub.add_parser("serve", help="websocket voice API, POST /v1/chat, /health and a browser page")
    t.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    t.add_argument("--port", type=int, default=8000)
    t.add_argument("--model", help="model folder (default: the shipped model)")
    t.add_argument("--engine", default="auto", choices=["auto", "cascade"])
    t.set_defaults(func=_cmd_serve)

    t = sub.add_parser("detokenize", help="audio tokens (the JSON of `aqaa tokenize --json`) -> wav")
    t.add_argument("input")
    t.add_argument("-o", "--output", required=True)
    t.add_argument("--vocoder", help="vocoder folder (default: the shipped one)")
    t.set_defaults(func=_cmd_detokenize)

    tr = sub.add_parser("train", help="training recipes").add_subparsers(dest="train_cmd", required=True)
    t = tr.add_parser("tokenizer", help="fit the linguistic k-means and train the semantic FSQ codec (resumable)")
    t.add_argument("--data", required=True, help="a folder made by `aqaa data synth`")
    t.add_argument("--out", required=True, help="tokenizer folder to write")
    t.add_argument("--preset", default="default", choices=["tiny", "default"])
    t.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. steps=500 tokenizer.semantic.channels=128")
    t.set_defaults(func=_cmd_train_tokenizer)
    t = tr.add_parser("dpo", help="DPO (TRL) from the SFT model on automatically built preference pairs (resumable)")
    t.add_argument("--sft", required=True, help="the SFT model folder")
    t.add_argument("--data", required=True)
    t.add_argument("--tokens", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. steps=200 beta=0.2 self_samples=200")
    t.set_defaults(func=_cmd_train_dpo)
    t = tr.add_parser("merge", help="merge SFT and DPO (linear / SLERP / TIES), chosen on the validation split")
    t.add_argument("--sft", required=True)
    t.add_argument("--dpo", required=True)
    t.add_argument("--base", required=True, help="the model both started from (stage 3), for TIES")
    t.add_argument("--data", required=True)
    t.add_argument("--tokens", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--limit", type=int, default=40, help="validation dialogues per candidate")
    t.set_defaults(func=_cmd_train_merge)
    t = tr.add_parser("vocoder", help="train the token vocoder on the assistant voice (resumable)")
    t.add_argument("--data", required=True)
    t.add_argument("--tokens", required=True, help="tokens.jsonl made by `aqaa data tokens`")
    t.add_argument("--out", required=True)
    t.add_argument("--preset", default="default", choices=["tiny", "default"])
    t.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. steps=500 vocoder.dim=128")
    t.set_defaults(func=_cmd_train_vocoder)
    for name, help_text in (("pretrain", "LM pre-training stage 1 (modality mixing), 2 (interleaved) or 3 (task)"),
                            ("sft", "supervised fine-tuning on single- and multi-turn SpokenQA dialogues")):
        t = tr.add_parser(name, help=help_text + " (resumable)")
        if name == "pretrain":
            t.add_argument("--stage", type=int, required=True, choices=[1, 2, 3])
        t.add_argument("--preset", default="default", help="tiny | default | smollm2 | medium")
        t.add_argument("--data", required=True, help="a folder made by `aqaa data synth`")
        t.add_argument("--tokens", required=True, help="tokens.jsonl made by `aqaa data tokens`")
        t.add_argument("--out", required=True, help="run folder; each stage writes OUT/<stage>/")
        t.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. steps=200 batch=8 lm.layers=4")
        t.set_defaults(func=_cmd_train_lm)

    d = sub.add_parser("data", help="synthesize and check SpokenQA data").add_subparsers(dest="data_cmd", required=True)
    s = d.add_parser("synth", help="render SpokenQA dialogues and pre-training corpora (resumable)")
    s.add_argument("--out", required=True)
    s.add_argument("--n", type=int, required=True, help="number of SpokenQA dialogues")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--sentences", type=int, default=None, help="spoken pre-training sentences (default: n)")
    s.add_argument("--text-lines", type=int, default=None, help="plain-text lines (default: 10 n)")
    s.add_argument("--hearing", type=int, default=0,
                   help="entity-rich sentences in query voices, for stage-1 ASR (default: 0)")
    s.add_argument("--word-lists", type=int, default=0,
                   help="domain words in random order in query voices, for stage-1 ASR (default: 0)")
    s.add_argument("--answers", action="store_true",
                   help="also render every typed knowledge / reasoning answer in the assistant voice (~4,700)")
    s.add_argument("--workers", type=int, default=None, help="worker processes (default: up to 2)")
    s.set_defaults(func=_cmd_data_synth)
    k = d.add_parser("check", help="Whisper WER per voice and control renderings of a synthesized folder")
    k.add_argument("--dir", required=True)
    k.add_argument("--out", default=None, help="report folder (default: the data folder)")
    k.add_argument("--splits", nargs="+", default=["train", "valid", "test"])
    k.set_defaults(func=_cmd_data_check)
    k = d.add_parser("tokens", help="encode every wav of a synthesized folder with a tokenizer (resumable)")
    k.add_argument("--data", required=True)
    k.add_argument("--tokenizer", required=True, help="tokenizer folder")
    k.add_argument("--out", required=True, help="folder for tokens.jsonl")
    k.set_defaults(func=_cmd_data_tokens)
    k = d.add_parser("pack", help="pack training sequences into shards read on demand (corpora bigger than memory)")
    k.add_argument("--data", required=True)
    k.add_argument("--tokens", required=True, help="tokens.jsonl made by `aqaa data tokens`")
    k.add_argument("--out", required=True, help="pack folder")
    k.add_argument("--preset", default="default", help="LM preset whose vocabulary stage 1 would build")
    k.add_argument("--lm", default=None, help="take the vocabulary of this aqaa LM folder instead")
    k.add_argument("--seed", type=int, default=0, help="stage 1's seed (the vocabulary is built as stage 1 would)")
    k.add_argument("--shard-sequences", type=int, default=4096)
    k.set_defaults(func=_cmd_data_pack)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ok = False
    try:
        args.func(args)
        ok = True
    except AqaaInputError as err:
        print(f"aqaa: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aqaa: interrupted", file=sys.stderr)
        return 130
    finally:
        _close_process_group(wait=ok)
    return 0


def _close_process_group(wait: bool) -> None:
    """Under torchrun, leave the process group before exit (after the other ranks, when this one succeeded): a gloo
    group still open at interpreter shutdown can abort a rank ("terminate called without an active exception")
    after its work is done and saved."""
    if "torch.distributed" not in sys.modules:  # nothing distributed was started (and no torch import for chat)
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
