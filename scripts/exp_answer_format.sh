#!/usr/bin/env bash
# A/B of the answer format from one stage-2 model: the plain rhythm (the recipe's) vs the transcribing rhythm
# (<|asr|> heard text <|tts|> before the spoken answer). Stage 3 + SFT as the recipe's (STAGE3_STEPS, SFT_STEPS
# override the step counts); each arm trains in RECIPE/lm-ARM and is assembled with the tokenizer and VOCODER
# (default: the recipe's) into RECIPE/model-ARM, ready for `aqaa eval --model`.
#
#   [VOCODER=DIR] bash scripts/exp_answer_format.sh runs/recipe-default data/spokenqa [plain|transcribe ...]
#
# The two arms' training can run side by side (one thread each); the evals should run alone (they time latency).
set -euo pipefail
R=${1:?recipe folder}; D=${2:?SpokenQA folder}; shift 2
VOCODER=${VOCODER:-$R/vocoder/model}
ARMS=${*:-plain transcribe}
AQAA=${AQAA:-.venv/bin/aqaa}
for arm in $ARMS; do
  out=$R/lm-$arm; mkdir -p "$out"
  [ -e "$out/stage2" ] || ln -s "$(realpath "$R/lm/stage2")" "$out/stage2"
  over=(); [ "$arm" = transcribe ] && over=(lm.rhythm.transcribe_query=true)
  $AQAA train pretrain --stage 3 --preset default --data "$D" --tokens "$R/tokens/tokens.jsonl" --out "$out" \
    steps="${STAGE3_STEPS:-800}" "${over[@]}"
  $AQAA train sft --preset default --data "$D" --tokens "$R/tokens/tokens.jsonl" --out "$out" \
    steps="${SFT_STEPS:-250}" batch=16 "${over[@]}"
  if [ -f "$VOCODER/vocoder.json" ]; then
    .venv/bin/python -c "import sys; from aqaa.serve.engine import assemble_model; \
assemble_model(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], extra={'arm': sys.argv[5]})" \
      "$R/model-$arm" "$R/tokenizer" "$out/sft/model" "$VOCODER" "$arm"
  fi
done
