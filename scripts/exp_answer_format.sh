#!/usr/bin/env bash
# A/B of the answer format from one stage-2 model: the plain rhythm (the recipe's) vs the transcribing rhythm
# (<|asr|> heard text <|tts|> before the spoken answer). Same stage 3 + SFT settings as the recipe; each arm is
# assembled with the recipe's tokenizer and vocoder and evaluated on the first LIMIT test items.
#
#   bash scripts/exp_answer_format.sh runs/recipe-default data/spokenqa [LIMIT] [plain|transcribe ...]
#
# The two arms' training can run side by side (one thread each); the evals should run alone (they time latency).
set -euo pipefail
R=${1:?recipe folder}; D=${2:?SpokenQA folder}; LIMIT=${3:-100}; shift $(( $# < 3 ? $# : 3 ))
ARMS=${*:-plain transcribe}
AQAA=${AQAA:-.venv/bin/aqaa}
for arm in $ARMS; do
  out=$R/lm  # the plain arm is the recipe's own stage 3 + SFT (a later `aqaa recipe` continues from it)
  if [ "$arm" != plain ]; then
    out=$R/lm-$arm; mkdir -p "$out"
    [ -e "$out/stage2" ] || ln -s "$(realpath "$R/lm/stage2")" "$out/stage2"
  fi
  over=(); [ "$arm" = transcribe ] && over=(lm.rhythm.transcribe_query=true)
  $AQAA train pretrain --stage 3 --preset default --data "$D" --tokens "$R/tokens/tokens.jsonl" --out "$out" \
    steps=800 "${over[@]}"
  $AQAA train sft --preset default --data "$D" --tokens "$R/tokens/tokens.jsonl" --out "$out" \
    steps=250 batch=16 "${over[@]}"
  if [ -f "$R/vocoder/model/vocoder.json" ]; then
    .venv/bin/python -c "import sys; from aqaa.serve.engine import assemble_model; \
assemble_model(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], extra={'arm': sys.argv[5]})" \
      "$R/model-$arm" "$R/tokenizer" "$out/sft/model" "$R/vocoder/model" "$arm"
  fi
done
