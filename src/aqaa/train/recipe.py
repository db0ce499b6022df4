"""`aqaa recipe --preset P`: the whole pipeline from a fresh clone, each stage skipped when its output is complete
and resumed when it was killed:

    data -> tokenizer -> tokens -> vocoder -> pre-train 1, 2, 3 -> SFT -> DPO -> merge -> model -> eval

The codec (tokenizer + vocoder) comes first: it depends on the data alone, and a run stopped part-way still leaves
a complete codec (`aqaa tokenize` / `aqaa detokenize`) that the LM stages then build on.

A recipe preset is a named set of sizes and step counts (`RECIPES`); every stage writes under OUT and keeps its own
checkpoints, so re-running the same command after a kill continues where it stopped. A summary of where the recipe
stands is printed before and after (a rich table) and saved as OUT/recipe.json with each stage's wall time.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class RecipeConfig:
    lm_preset: str = "default"
    tokenizer_preset: str = "default"
    vocoder_preset: str = "default"
    n: int = 2000  # SpokenQA dialogues (6.85 h of audio with the sentences: 13 min on 2 cores)
    sentences: int = 5000
    hearing: int = 4000  # entity-rich sentences in query voices (stage-1 ASR breadth; reports/hearing_data.md)
    answers: bool = False  # also render every typed question's answer (`aqaa.data.synth.plan_answers`)
    seed: int = 1
    tokenizer: list = field(default_factory=list)  # key=value overrides per stage
    stage1: list = field(default_factory=lambda: ["steps=2000"])
    stage2: list = field(default_factory=lambda: ["steps=400"])
    stage3: list = field(default_factory=lambda: ["steps=800"])
    sft: list = field(default_factory=lambda: ["steps=250", "batch=16"])
    # further SFT rounds, each from the first SFT model with a fresh schedule and a mixture of its own
    sft_rounds: list = field(default_factory=list)
    # with sft_rounds, DPO and merge start from the first SFT model moved this far toward the average of the rounds'
    # models (linear weight merges, `aqaa.train.merge.soup`); 0: from the first SFT model
    sft_soup: float = 1.0
    dpo: list = field(default_factory=lambda: ["steps=100", "batch=4", "grad_accum=2", "lr=5e-5"])
    vocoder: list = field(default_factory=lambda: ["steps=6000", "energy_weight=1.0"])
    # further vocoder rounds, each from the previous round's model with a fresh schedule (measured: a second 6000
    # steps at lr 1e-3 took WER 0.087 -> 0.074 and prosody-kept clips 53 -> 60 of 74; a third of 4000 steps drawing
    # extreme pitch/level clips more, 0.074 -> 0.062 and 60 -> 64; reports/vocoder_vq6000; a fourth of 2000 steps at
    # a low lr with the periodicity floor: source voiced frames kept 0.902 -> 0.948 at the same WER (200 answers 0.088
    # -> 0.090), prosody-kept 64 -> 65 of 74 held-out and 264 -> 275 of 301 training clips; reports/vocoder_voicing)
    vocoder_rounds: list = field(default_factory=lambda: [
        ["steps=6000", "lr=1e-3", "energy_weight=1.0"],
        ["steps=4000", "lr=1e-3", "energy_weight=1.0", "extreme_weight=0.5"],
        ["steps=2000", "lr=5e-5", "energy_weight=1.0", "extreme_weight=0.5", "periodicity_weight=2.0",
         "periodicity_floor=0.85", "seed=23"]])
    linguistic_init: bool = True  # stage 1 seeds the <l_k> embeddings from the recipe's tokenizer centroids
    merge_limit: int = 40
    eval_limit: int = 0  # 0: the whole test split


# The heard-audio encoder from the start of stage 1 (`aqaa/lm/heard.py`): a CTC-warmed BiGRU over every heard audio
# block whose output joins the linguistic positions only, so the semantic tokens keep the prosody (measured from a
# longer stage 1 in reports/hearing_data.md: entities heard 3 -> 9 of 39, voice understanding kept only with the
# linguistic residual). Measured against the default with its 2,000-step stage 1 (session 11): no entity gain,
# overall 23.5 vs 26.5 %, so not the default; kept for longer stage-1 schedules (GPUs).
HEARD = ["lm.heard_encoder=128", "lm.heard_ctc=1.0"]
HEARD_STAGE1 = ["steps=2000", *HEARD, "lm.heard_residual=linguistic", "heard_ctc_warmup=1000"]

# session 19's best chain (`runs/heard-typed3`, reports/hearing_data.md: 29.8 % mean of 3 seeds vs the default's
# 27.3 %, voice understanding 84-86 % vs 95 %): the encoder from the start of a long stage 1 (~2 h on 2 cores, ~3 min
# on one H100), its output on the linguistic positions from stage 2, and from stage 3 each query's CTC reading
# (snapped to the lexicon), half the queries' own codes hidden behind it, and typed questions in the mixture
HEARD_READING = [*HEARD, "lm.heard_residual=linguistic", "lm.heard_reading=true", "lm.heard_lexicon=0.5",
                 "heard_hide=0.5"]
HEARD_READ = dict(
    stage1=["steps=5100", *HEARD, "lm.heard_residual=all", "heard_ctc_warmup=1000"],
    stage2=["steps=400", *HEARD, "lm.heard_residual=linguistic"],
    stage3=["steps=800", *HEARD_READING, 'mix={"single_turn":0.5,"interleaved":0.2,"asr":0.1,"typed":0.2}'],
    sft=["steps=250", "batch=16", *HEARD_READING, 'mix={"dialogue":0.6,"single_turn":0.15,"typed":0.25}'])

# heard-read reading with the encoder as stage 1 left it (`lm.heard_reader`, a frozen copy taken when stage 2
# starts): in heard-read the reading degrades stage by stage (session 22, test questions: CER 0.155 after stage 1,
# 0.192 after SFT; entities 6 -> 0 of 34)
HEARD_FROZEN = {stage: [*settings, "lm.heard_reader=true"] if stage != "stage1" else settings
                for stage, settings in HEARD_READ.items()}

# heard-frozen with a longer SFT whose mixture adds three parts (`aqaa.train.lm`): `recall` (multi-turn dialogues
# recombined so the earlier turn decides the answer: multi-turn 2.6 -> 35.9 % with typed_control, session 23),
# `typed_control` (typed speech-control requests answered in their style) and `voice` (voice questions weighed
# back up: the typed requests taught "would you say ..." to mean "repeat")
HEARD_RECALL = {**HEARD_FROZEN, "sft": [*HEARD_FROZEN["sft"], "steps=500", 'mix={"dialogue":0.3,"single_turn":0.05,'
                '"voice":0.1,"typed":0.2,"typed_control":0.1,"recall":0.25}']}

# the shipped LM since session 25 (reports/default_model/session25): two more SFT rounds from the first SFT model,
# one weighed toward the `recall` dialogues, one toward recall and the voice questions (`voice`), and their plain
# average (`sft_soup=1.0`; chosen on the validation split over session 24's soup of the first and the recall round
# at t 0.7, and the voice round's own soups at 0.5 / 0.7). The recall round alone forgets the held-out voice
# phrasings (voice understanding 67 %), the voice round keeps them (91 %); their average recalls more than either.
# Test split, 3 seeds: 34.2 % vs 31.0 % for session 24's soup (paired +3.2 points, 95 % CI +0.2 to +6.5)
RECALL_MIX = 'mix={"dialogue":0.6,"single_turn":0.15,"recall":0.25}'
RECALL_ROUND = ["steps=500", "batch=16", RECALL_MIX]
VOICE_MIX = 'mix={"dialogue":0.5,"single_turn":0.1,"recall":0.25,"voice":0.15}'
VOICE_ROUND = ["steps=500", "batch=16", VOICE_MIX]

# SmolLM2-135M-Instruct as the backbone, trained as a LoRA delta (rank 32 adapters + the new audio and control rows:
# a 25 MB folder over the bundled base), on the default recipe's schedule: for machines with a GPU. It knows English:
# fine-tuned on the training dialogues' text it answers 84.5 % of the test split's knowledge, reasoning and multi-turn
# questions, which no from-scratch LM here composes (reports/default_model/session28/backbone_text.md). Not the CPU
# default: a stage-1 step takes 14 s on 2 cores (stage 1 ~8 h) and it decodes at LM RTF ~0.4, outside the ship
# targets. DPO, merge and the model stage save it whole (fp32, ~0.5 GB). No centroid seeding of the <l_k> rows:
# over the tied head it made stage 1 start at a loss of 22.9 instead of 14.9 (3 steps, batch 8, measured on 2 cores),
# the seeded rows' spread turning into confident wrong logits; with transformers' mean resizing they start alike.
SMOLLM2_LORA = ["lm.lora_rank=32"]
DEFAULT = RecipeConfig(sft_rounds=[RECALL_ROUND, VOICE_ROUND])
SMOLLM2 = dict(lm_preset="smollm2", linguistic_init=False,
               **{stage: [*getattr(DEFAULT, stage), *SMOLLM2_LORA] for stage in ("stage1", "stage2", "stage3", "sft")},
               sft_rounds=[[*r, *SMOLLM2_LORA] for r in DEFAULT.sft_rounds])

RECIPES = {
    "default": DEFAULT,
    "smollm2": RecipeConfig(**SMOLLM2),
    "heard": RecipeConfig(stage1=HEARD_STAGE1),
    "heard-read": RecipeConfig(**HEARD_READ),
    "heard-frozen": RecipeConfig(**HEARD_FROZEN),
    "heard-recall": RecipeConfig(**HEARD_RECALL),
    "tiny": RecipeConfig(lm_preset="tiny", tokenizer_preset="tiny", vocoder_preset="tiny", n=8, sentences=4,
                         hearing=2, seed=5, tokenizer=["steps=12"], stage1=["steps=3", "batch=2"],
                         stage2=["steps=2", "batch=2"], stage3=["steps=2", "batch=2"], sft=["steps=2", "batch=2"],
                         sft_rounds=[["steps=2", "batch=2", RECALL_MIX], ["steps=2", "batch=2", "seed=1", VOICE_MIX]],
                         sft_soup=0.5,
                         dpo=["steps=2", "batch=2", "grad_accum=1", "save_every=2"],
                         vocoder=["steps=2", "batch=2"], vocoder_rounds=[["steps=1", "batch=2"]], merge_limit=2,
                         eval_limit=2),
}

SHIPPED_CODEC = Path(__file__).resolve().parent.parent / "assets" / "default"

STAGES = ["data", "tokenizer", "tokens", "vocoder", "stage1", "stage2", "stage3", "sft", "dpo", "merge", "model",
          "eval"]


class Recipe:
    def __init__(self, preset: str, out: str | Path, data: str | Path | None = None, codec: str | Path | None = None):
        """`codec`: a folder with `tokenizer/` and `vocoder/` ("shipped": the package's own) that the tokenizer and
        vocoder stages copy instead of training, so only the LM is trained against an existing codec."""
        from aqaa.errors import AqaaInputError

        if preset not in RECIPES:
            raise AqaaInputError(f"unknown recipe preset {preset!r}; one of {sorted(RECIPES)}")
        self.preset, self.cfg = preset, RECIPES[preset]
        self.out = Path(out)
        self.data = Path(data) if data else self.out / "data"
        self.codec = None
        if codec is not None:
            self.codec = SHIPPED_CODEC if str(codec) == "shipped" else Path(codec)
            for part in ("tokenizer/tokenizer.json", "vocoder/vocoder.json"):
                if not (self.codec / part).is_file():
                    raise AqaaInputError(f"{codec}: not a codec folder (no {part})")
        self.paths = {
            "data": self.data / "synth.json", "tokenizer": self.out / "tokenizer" / "tokenizer.json",
            "tokens": self.out / "tokens" / "done.json", "stage1": self.out / "lm" / "stage1" / "done.json",
            "stage2": self.out / "lm" / "stage2" / "done.json", "stage3": self.out / "lm" / "stage3" / "done.json",
            "sft": self._sft_model().parent / "done.json", "dpo": self.out / "dpo" / "done.json",
            "merge": self.out / "merge" / "done.json", "vocoder": self._vocoder_dirs()[-1] / "done.json",
            "model": self.out / "model" / "aqaa.json", "eval": self.out / "eval" / "report.json",
        }

    def _sft_dirs(self) -> list[Path]:
        """SFT's first round, then one folder per further round."""
        return [self.out / "lm" / "sft"] + [self.out / "lm" / f"sft_round{k + 2}" / "sft"
                                            for k in range(len(self.cfg.sft_rounds))]

    def _sft_model(self) -> Path:
        """The model SFT leaves for DPO and merge: the first SFT model's, or the soup of it and its rounds."""
        if self.cfg.sft_rounds:
            return self.out / "lm" / "sft_soup" / "model"
        return self._sft_dirs()[0] / "model"

    def _soup_key(self) -> dict:
        """What the soup is made of (its done.json): a soup of other rounds or another t is made again."""
        dirs = self._sft_dirs()
        return {"first": str(dirs[0] / "model"), "rounds": [str(d / "model") for d in dirs[1:]], "t": self.cfg.sft_soup}

    def _vocoder_dirs(self) -> list[Path]:
        """The vocoder's first round, then one folder per further round."""
        rounds = len(self.cfg.vocoder_rounds)
        return [self.out / "vocoder"] + [self.out / f"vocoder_round{k + 2}" for k in range(rounds)]

    def done(self, stage: str) -> bool:
        if stage == "data":
            return self._made_for_this_data(self.paths["data"], n_default=None)
        if stage == "tokens":  # the cache covers the data it was made for (data grown later re-runs the stage)
            return self._made_for_this_data(self.paths["tokens"], n_default=self.cfg.n)
        if stage == "sft" and self.cfg.sft_rounds:
            path = self.paths["sft"]
            return path.exists() and json.loads(path.read_text()) == self._soup_key()
        return self.paths[stage].exists()

    def _made_for_this_data(self, path: Path, n_default: int | None) -> bool:
        """Whether the record at `path` (synth.json, tokens/done.json) was written for the data this preset makes;
        `n_default` stands in for a record without `n` (token caches made before it was recorded)."""
        made = json.loads(path.read_text()) if path.exists() else {}
        return (made.get("n", n_default), made.get("hearing", 0), made.get("answers", False),
                made.get("version", 1)) == self._data_key()

    def _data_key(self) -> tuple[int, int, bool, int]:
        from aqaa.data.synth import SYNTH_VERSION

        return self.cfg.n, self.cfg.hearing, self.cfg.answers, SYNTH_VERSION

    def status(self) -> list[dict]:
        log = self._log()
        rows = []
        for s in STAGES:
            state = "done" if self.done(s) else ("started" if s in log.get("started", {}) else "pending")
            rows.append({"stage": s, "state": state, "wall_s": log.get("wall_s", {}).get(s)})
        return rows

    def _log(self) -> dict:
        path = self.out / "recipe.json"
        return json.loads(path.read_text()) if path.exists() else {"preset": self.preset, "started": {}, "wall_s": {}}

    def _save_log(self, log: dict) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.out / ".recipe.json.tmp"
        tmp.write_text(json.dumps(log, indent=1))
        tmp.replace(self.out / "recipe.json")

    def run(self, until: str | None = None) -> dict:
        log = self._log()
        log["config"] = asdict(self.cfg)
        if self.codec:
            log["codec"] = str(self.codec)
        for stage in STAGES:
            if self.done(stage):
                continue
            log["started"][stage] = time.strftime("%Y-%m-%d %H:%M:%S")
            self._save_log(log)
            t0 = time.perf_counter()
            getattr(self, f"_run_{stage}")()
            log["wall_s"][stage] = round(log["wall_s"].get(stage, 0) + time.perf_counter() - t0, 1)
            self._save_log(log)
            if stage == until:
                break
        return log

    # ------------------------------------------------------------------ stages
    def _tokens_path(self) -> Path:
        return self.out / "tokens" / "tokens.jsonl"

    def _run_data(self) -> None:
        from aqaa.data.synth import synth

        synth(self.data, self.cfg.n, self.cfg.seed, sentences=self.cfg.sentences, hearing=self.cfg.hearing,
              answers=self.cfg.answers)

    def _copy_from_codec(self, part: str, dest: Path) -> None:
        import shutil

        from aqaa.paths import atomic_dir

        with atomic_dir(dest) as tmp:
            shutil.copytree(self.codec / part, tmp, dirs_exist_ok=True)

    def _run_tokenizer(self) -> None:
        from aqaa.train.tokenizer import train_tokenizer

        if self.codec:
            return self._copy_from_codec("tokenizer", self.out / "tokenizer")
        train_tokenizer(self.data, self.out / "tokenizer", self.cfg.tokenizer_preset, self.cfg.tokenizer)

    def _run_tokens(self) -> None:
        from aqaa.data.tokens import encode_corpus

        encode_corpus(self.data, self.out / "tokenizer", self.out / "tokens")
        n, hearing, answers, version = self._data_key()
        self.paths["tokens"].write_text(json.dumps({"complete": True, "n": n, "hearing": hearing, "answers": answers,
                                                    "version": version}))

    def _lm_stage(self, stage: str) -> None:
        from aqaa.train.lm import stage_config, train_stage

        overrides = list(getattr(self.cfg, stage))
        if stage == "stage1" and self.cfg.linguistic_init:
            overrides.insert(0, f"linguistic_init={self.out / 'tokenizer'}")
        cfg = stage_config(stage, self.cfg.lm_preset, overrides)
        train_stage(cfg, self.data, self._tokens_path(), self.out / "lm")

    def _run_stage1(self) -> None:
        self._lm_stage("stage1")

    def _run_stage2(self) -> None:
        self._lm_stage("stage2")

    def _run_stage3(self) -> None:
        self._lm_stage("stage3")

    def _run_sft(self) -> None:
        from aqaa.train.lm import stage_config, train_stage

        self._lm_stage("sft")
        dirs = self._sft_dirs()
        for folder, overrides in zip(dirs[1:], self.cfg.sft_rounds):
            cfg = stage_config("sft", self.cfg.lm_preset, [*overrides, f"init={dirs[0] / 'model'}"])
            train_stage(cfg, self.data, self._tokens_path(), folder.parent)
        if self.cfg.sft_rounds:
            from aqaa.train.merge import soup

            key = self._soup_key()
            soup(key["first"], key["rounds"], key["t"], self._sft_model().parent)

    def _run_dpo(self) -> None:
        from aqaa.train.dpo import train_dpo

        train_dpo(self._sft_model(), self.data, self._tokens_path(), self.out / "dpo", self.cfg.dpo)

    def _run_merge(self) -> None:
        from aqaa.train.merge import merge_and_select

        merge_and_select(self._sft_model(), self.out / "dpo" / "model",
                         self.out / "lm" / "stage3" / "model", self.data, self._tokens_path(), self.out / "merge",
                         self.cfg.merge_limit)

    def _run_vocoder(self) -> None:
        from aqaa.train.vocoder import train_vocoder

        dirs = self._vocoder_dirs()
        if self.codec:
            self._copy_from_codec("vocoder", dirs[-1] / "model")
            (dirs[-1] / "done.json").write_text(json.dumps({"copied_from": str(self.codec / "vocoder")}))
            return
        model = train_vocoder(self.data, self._tokens_path(), dirs[0], self.cfg.vocoder_preset, self.cfg.vocoder)
        for folder, overrides in zip(dirs[1:], self.cfg.vocoder_rounds):
            model = train_vocoder(self.data, self._tokens_path(), folder, self.cfg.vocoder_preset,
                                  [*overrides, f"init={model}"])

    def _run_model(self) -> None:
        from aqaa.serve.engine import assemble_model

        assemble_model(self.out / "model", self.out / "tokenizer", self.out / "merge" / "model",
                       self._vocoder_dirs()[-1] / "model",
                       extra={"recipe": self.preset, "step_dtype": "int8"})  # reports/decode_quantized.md

    def _run_eval(self) -> None:
        from aqaa.eval.harness import run_eval
        from aqaa.eval.report import write_report
        from aqaa.serve.engine import AqaaSession

        records = run_eval(self.data / "test.jsonl", self.out / "eval", lambda: AqaaSession(self.out / "model"),
                           "aqaa", self.cfg.eval_limit or None)
        write_report(self.out / "eval", {"aqaa": records}, title=f"aqaa recipe {self.preset}: SpokenQA test")


def print_status(recipe: Recipe) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"aqaa recipe {recipe.preset} -> {recipe.out}")
    for col in ("stage", "state", "wall time"):
        table.add_column(col)
    for row in recipe.status():
        colour = {"done": "green", "started": "yellow", "pending": "white"}[row["state"]]
        wall = f"{row['wall_s']:.0f} s" if row["wall_s"] else ""
        table.add_row(row["stage"], f"[{colour}]{row['state']}[/{colour}]", wall)
    Console(stderr=True).print(table)
