#!/usr/bin/env bash
# Records docs/usage-session.md: starts the service, runs every command shown there and writes
# what they print. Run it as `make usage-session` (in the project's virtual environment) after
# any change to what the service answers; tests/docs/test_usage_session.py re-records into a
# temporary file and fails when the committed document differs.
#   PORT (8011)  MODEL_DIR (onnx_models/)  OUT (docs/usage-session.md)
set -uo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-8011}
OUT=${OUT:-docs/usage-session.md}
WORK=$(mktemp -d)
run() {  # show a command and its output as a console block
  echo '```console'
  echo "\$ $1"
  (cd "$WORK" && bash -c "$1" 2>&1)
  echo '```'
}
{
echo "# Trying mmserve as a new user"
echo
echo "A transcript, recorded on $(date -u +%Y-%m-%d) on a 2-core Linux machine with the models"
echo "committed in \`onnx_models/\`. Commands run from the repository root unless noted, in the"
echo "project's virtual environment (\`. .venv/bin/activate\`; \`make serve\` makes it). It is"
echo "re-recorded with \`make usage-session\`, and a test checks that it still matches."
echo
echo "## Start the service"
echo
echo '```console'
echo "\$ python -m service serve --port $PORT --workers 2"
python -m service serve --port $PORT --workers 2 ${MODEL_DIR:+--model-dir "$MODEL_DIR"} >"$WORK/server.log" 2>&1 &
SERVER=$!
# /readyz answers from whichever worker is up; wait for both to finish starting.
for _ in $(seq 1 480); do
  [ "$(grep -c 'Application startup complete' "$WORK/server.log")" -ge 2 ] && break; sleep 0.25
done
if [ "$(grep -c 'Application startup complete' "$WORK/server.log")" -lt 2 ]; then
  kill $SERVER 2>/dev/null; cat "$WORK/server.log" >&2; echo "usage-session: the server did not start" >&2
  exit 1
fi
curl -s -w '  HTTP %{http_code}\n' "http://127.0.0.1:$PORT/readyz" >/dev/null
grep -v '"GET /readyz' "$WORK/server.log"
echo '```'
echo
echo "## Some inputs: a drawn 7 and a spoken \"seven\""
echo
echo 'Any PNG/JPEG/WebP/GIF/BMP/TIFF image and any WAV/FLAC/OGG/MP3 clip will do; here the image'
echo 'is drawn with Pillow and the speech comes from espeak-ng (in a scratch folder).'
echo
run "python3 -c \"from PIL import Image, ImageDraw, ImageFont; im = Image.new('L', (64, 64), 245); ImageDraw.Draw(im).text((32, 32), '7', fill=10, font=ImageFont.load_default(size=52), anchor='mm'); im.save('digit.png')\""
run "espeak-ng -w seven.wav seven && ls -l digit.png seven.wav"
echo
echo "## Predict from all three modalities"
echo
run "curl -s -F text=seven -F image=@digit.png -F audio=@seven.wav http://127.0.0.1:$PORT/v1/predict | python3 -m json.tool"
echo
echo "## Any subset works; here the audio alone, with the top 5 labels"
echo
run "curl -s -F audio=@seven.wav 'http://127.0.0.1:$PORT/v1/predict?top_k=5' | python3 -m json.tool"
echo
echo "## Text alone needs no multipart"
echo
run "curl -s -d text=three http://127.0.0.1:$PORT/v1/predict | python3 -m json.tool"
echo
echo "## Inputs unlike the training data are marked unsure"
echo
echo 'The label is still what the model says; `ood.unsure` says not to trust it. One modality'
echo 'gets no `consistent` verdict (it needs two).'
echo
run "curl -s -F 'text=hello world' http://127.0.0.1:$PORT/v1/predict | python3 -c 'import json, sys; a = json.load(sys.stdin); print({t: (p[\"label\"], round(p[\"probability\"], 3)) for t, p in a[\"tasks\"].items()}, a[\"ood\"])'"
echo
echo "## The fused embedding"
echo
run "curl -s -F text=seven -F image=@digit.png http://127.0.0.1:$PORT/v1/models/digits-xattn/embed | python3 -c 'import json, sys; b = json.load(sys.stdin); print(b[\"model\"], b[\"dim\"], [round(x, 3) for x in b[\"embedding\"][:6]], \"...\")'"
echo
echo "## Mistakes get a 4xx naming the field"
echo
run "curl -s -w '  HTTP %{http_code}\n' -F image=@seven.wav http://127.0.0.1:$PORT/v1/predict"
run "curl -s -w '  HTTP %{http_code}\n' -F text=seven -F video=@digit.png http://127.0.0.1:$PORT/v1/predict"
run "curl -s -w '  HTTP %{http_code}\n' -F text=seven http://127.0.0.1:$PORT/v1/models/no-such-model/predict"
run "curl -s -w '  HTTP %{http_code}\n' -X POST http://127.0.0.1:$PORT/v1/predict"
run "curl -s -w '  HTTP %{http_code}\n' -F text= http://127.0.0.1:$PORT/v1/predict"
run "curl -s -w '  HTTP %{http_code}\n' -F image=digit.png http://127.0.0.1:$PORT/v1/predict"
run "curl -s -w '  HTTP %{http_code}\n' http://127.0.0.1:$PORT/v1/predict"
echo
echo "## What is served"
echo
run "curl -s http://127.0.0.1:$PORT/v1/models | python3 -m json.tool"
run "curl -s http://127.0.0.1:$PORT/v1/models/digits-xattn | python3 -c 'import json, sys; d = json.load(sys.stdin); print({k: d[k] for k in (\"name\", \"version\", \"modalities\", \"execution_providers\", \"batching\")}); print(\"tasks:\", [(t[\"name\"], t[\"labels\"]) for t in d[\"tasks\"]])'"
run "curl -s -w '  HTTP %{http_code}\n' http://127.0.0.1:$PORT/readyz"
echo
echo "## The API documentation"
echo
echo "Open <http://127.0.0.1:$PORT/docs> in a browser: every endpoint is listed with its answers and"
echo 'errors, and the upload endpoints offer a text box and two file pickers with "Try it out"'
echo 'already on. The page needs no internet access (its assets are served locally).'
echo
echo '![Uploading a drawn 7 and a spoken seven from /docs](img/docs-try-it-out.png)'
echo
run "curl -s http://127.0.0.1:$PORT/docs | grep -o '<title>.*</title>\|/docs-static/[a-z.-]*js'"
run "curl -s http://127.0.0.1:$PORT/openapi.json | python3 -c 'import json, sys; d = json.load(sys.stdin); print(\"openapi\", d[\"openapi\"]); [print(m.upper(), p, sorted(o[\"responses\"])) for p, ops in d[\"paths\"].items() for m, o in ops.items()]; print(json.dumps(d[\"paths\"][\"/v1/predict\"][\"post\"][\"requestBody\"][\"content\"][\"multipart/form-data\"][\"schema\"][\"properties\"], indent=1))'"
echo
echo "## Stop it"
echo
echo '```console'
echo '$ kill -TERM <server pid>    # or Ctrl+C: in-flight requests finish, then it exits'
before=$(wc -l <"$WORK/server.log")
kill -TERM $SERVER; wait $SERVER
tail -n +$((before + 1)) "$WORK/server.log"  # everything the shutdown logged
echo '```'
} > "$OUT"
rm -rf "$WORK"
echo "wrote $OUT"
