#!/bin/sh
# Opens a `spikesim compare` report in headless Chromium (Debian's `chromium`; `make deps-test`
# installs it) and checks what a reader sees: the page loads without console errors, and its
# inline SVG charts are live SVG elements with one mark per run: a laid-out <circle class="run">
# per run in the accuracy-energy scatter, a <g class="run"> per run in the per-layer energy
# bars, a <g class="rates"> per spiking run, the Pareto polyline, a table row per run, and no
# scripts. A small tiny comparison (3 runs, 1 skipped grid point) is built first with BUILD's
# spikesim. Skipped, with a message and exit code 0, when chromium is not installed.
#   tests/html_check.sh [BUILD]
build=${1:-build}
browser=""
for b in chromium chromium-browser google-chrome; do
    if command -v "$b" >/dev/null 2>&1; then browser=$b; break; fi
done
if [ -z "$browser" ]; then
    echo "html_check: SKIPPED: chromium is not installed (make deps-test installs it); report.html was not checked in a browser"
    exit 0
fi
tmp=$(mktemp -d /tmp/spikesim-html-check.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail() { echo "html_check: FAILED: $*"; exit 1; }

cat >"$tmp/base.yaml" <<'YAML'
name: tiny
seed: 3
data: {source: synthetic, synthetic_samples: 16}
model: {image_size: 16, patch: 4, dim: 16, heads: 2, blocks: 1, mlp_ratio: 2, timesteps: 2, init_std: 1.0}
record: {samples: 1}
YAML
cat >"$tmp/compare.yaml" <<YAML
name: html_check
base: $tmp/base.yaml
skip_invalid: true
grid:
  model.attention.kind: [bsa, softmax]
  model.timesteps: [1, 2]
YAML
"$build/spikesim" compare "$tmp/compare.yaml" -o "$tmp/out" --threads 1 --quiet || fail "spikesim compare failed"
[ -f "$tmp/out/report.html" ] || fail "no report.html"

# The checker page loads the report in an iframe (same directory, file access allowed) and
# writes what it finds into its own DOM, which --dump-dom prints.
cat >"$tmp/out/check.html" <<'HTML'
<!DOCTYPE html>
<html><body><iframe id="f" src="report.html" width="1200" height="900"></iframe><pre id="out">pending</pre>
<script>
document.getElementById('f').onload = function () {
  var d = this.contentDocument, o = [];
  function n(sel) { return d ? d.querySelectorAll(sel).length : -1; }
  var live = 0, cs = d ? d.querySelectorAll('svg#accuracy-energy circle.run') : [];
  for (var i = 0; i < cs.length; i++)
    // an SVG element of the iframe's realm (instanceof would test this window's classes)
    if (cs[i].namespaceURI === 'http://www.w3.org/2000/svg' && typeof cs[i].getBBox === 'function' &&
        cs[i].getBBox().width > 0) live++;
  o.push('circles=' + n('svg#accuracy-energy circle.run'));
  o.push('live_circles=' + live);
  o.push('bars=' + n('svg#layer-energy g.run'));
  o.push('bar_rects=' + n('svg#layer-energy g.run rect.layer'));
  o.push('rates=' + n('svg#firing-rate g.rates'));
  o.push('pareto=' + n('svg#accuracy-energy polyline.pareto'));
  o.push('rows=' + n('table#runs tr.run'));
  o.push('scripts=' + n('script'));
  document.getElementById('out').textContent = 'result: ' + o.join(' ') + ' end';
};
</script></body></html>
HTML

flags="--headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run --allow-file-access-from-files --virtual-time-budget=10000 --enable-logging=stderr --v=0"
# 1. the report alone: it loads and logs no console error
# shellcheck disable=SC2086
timeout 120 "$browser" $flags --dump-dom "file://$tmp/out/report.html" >"$tmp/dom.html" 2>"$tmp/report.log" ||
    fail "chromium could not load report.html: $(tail -3 "$tmp/report.log")"
grep -q '</html>' "$tmp/dom.html" || fail "report.html: no DOM dumped"
if grep -E 'CONSOLE|Uncaught|ERR_FILE_NOT_FOUND|net::ERR' "$tmp/report.log" >/dev/null; then
    fail "report.html logged errors: $(grep -E 'CONSOLE|Uncaught|net::ERR' "$tmp/report.log" | head -3)"
fi
n=$(grep -o '<circle class="run"' "$tmp/dom.html" | wc -l)
[ "$n" -eq 3 ] || fail "DOM of report.html has $n <circle class=\"run\">, expected 3"
n=$(grep -o '<g class="run"' "$tmp/dom.html" | wc -l)
[ "$n" -eq 3 ] || fail "DOM of report.html has $n <g class=\"run\">, expected 3"

# 2. the checker: the marks are SVG elements, laid out, one per run
# shellcheck disable=SC2086
timeout 120 "$browser" $flags --dump-dom "file://$tmp/out/check.html" >"$tmp/check.dom" 2>"$tmp/check.log" ||
    fail "chromium could not load the checker page: $(tail -3 "$tmp/check.log")"
result=$(grep -o '<pre id="out">result: [^<]* end' "$tmp/check.dom" | sed 's/^<pre id="out">//')
[ -n "$result" ] || fail "the checker page did not report (is file access blocked?): $(grep -o '<pre id="out">[^<]*' "$tmp/check.dom")"
want="result: circles=3 live_circles=3 bars=3 bar_rects="
case "$result" in
    "$want"*) ;;
    *) fail "unexpected marks: $result" ;;
esac
case "$result" in
    *" bar_rects=0 "*) fail "the energy bars have no layer segments: $result" ;;
esac
case "$result" in
    *" rates=2 pareto=1 rows=3 scripts=0 end") ;;
    *) fail "unexpected marks: $result" ;;
esac
echo "html_check: ok ($browser: $result)"
