#!/bin/sh
# Session 28: can the pretrained backbone hear? Same ASR-only stage-1 budget for the default LM and smollm2 + LoRA.
cd /work/main
COMMON='mix={"asr":1.0} batch=8 max_len=256 steps=250 warmup=20 weight_decay=0.0 ckpt_every=50 log_every=5 linguistic_init=src/aqaa/assets/default/tokenizer'
.venv/bin/aqaa train pretrain --stage 1 --preset default --data data/spokenqa --tokens runs/recipe/tokens/tokens.jsonl --out runs/hear-pilot/default $COMMON lr=1e-3 > runs/hear-pilot/default.log 2>&1
.venv/bin/aqaa train pretrain --stage 1 --preset smollm2 --data data/spokenqa --tokens runs/recipe/tokens/tokens.jsonl --out runs/hear-pilot/smol $COMMON lr=5e-4 lm.lora_rank=32 > runs/hear-pilot/smol.log 2>&1
echo done > runs/hear-pilot/done
