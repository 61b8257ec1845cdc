#!/usr/bin/env python3
"""Extract the fenced code blocks of every README and run them as written.

Used by scripts/test-snippets.sh (which builds what the blocks need and
starts the emulator); stdlib only.

    snippets.py list [README ...]     every block: where, language, what is done with it
    snippets.py run [README ...]      run the runnable blocks; prints `N passed, N failed`
    snippets.py selftest              check the parser's rules on made-up READMEs

The convention (also in DEVELOPERS.md):

* Every fence has an info string. Blocks in `rust`, `c`, `cpp`, `python`,
  `sh` / `bash`, `go` and `csharp` are snippets and run (Go and C# where
  their toolchains are installed; the go and csharp stages install them);
  `text` (output, listings), `toml`, `cmake`, `json` and `ini` never run.
* An HTML comment just before a fence (GitHub does not render it), one or
  more lines of them, changes that:
    <!-- snippet: skip REASON -->       not run (say why: a synopsis, needs fal.ai, ...)
    <!-- snippet: expect "TEXT" ... --> stdout must contain each TEXT
    <!-- snippet: excerpt PATH -->      the block is a verbatim excerpt of PATH
                                        (relative to the README), and PATH runs instead
    <!-- snippet: output-of CMD -->     (on a `text` block) the block is exactly the
                                        stdout of the shell command CMD
* Snippets run against the emulator: FAL_RUN_HOST=ws://127.0.0.1:PORT,
  FAL_REST_URL=http://127.0.0.1:PORT and FAL_KEY=test-key are set, as the
  root README tells a reader to set them, and target/release is on PATH.
  Shell blocks run with `bash -e` from the repository root, in their own
  process group (killed afterwards: a `serve &` is stopped).
* Each run is bounded by a timeout; exit status 0 passes.

Environment: SNIPPET_PYTHON (interpreter with the wheel), SNIPPET_TARGET
(the workspace's cargo target dir, default target; the Rust snippets build in
its snippets/ subdirectory), SNIPPET_TMP (work dir), SNIPPET_ONLY
(comma-separated languages to run).
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
RUN = {"rust", "c", "cpp", "python", "sh", "bash", "go", "csharp"}
NEVER = {"text", "toml", "cmake", "json", "ini"}
MARKER = re.compile(r"^\s*<!--\s*snippet:\s*(\w[\w-]*)\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})(.*)$")
TIMEOUT = {"text": 60, "rust": 60, "c": 60, "cpp": 60, "python": 90, "sh": 300, "bash": 300, "go": 120, "csharp": 60}


@dataclass
class Block:
    readme: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    skip: Optional[str] = None
    expect: List[str] = field(default_factory=list)
    excerpt: Optional[Path] = None
    output_of: Optional[str] = None

    @property
    def where(self) -> str:
        return f"{self.readme.relative_to(ROOT)}:{self.line}"

    @property
    def runs(self) -> bool:
        return (self.lang in RUN and self.skip is None) or self.output_of is not None


class FormatError(Exception):
    pass


def readmes() -> List[Path]:
    out = subprocess.run(
        ["git", "ls-files", "*README*.md", "README.md"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return sorted({ROOT / p for p in out})


def parse(path: Path) -> List[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: List[Block] = []
    markers: List[Tuple[str, str, int]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        m = MARKER.match(line)
        if m:
            markers.append((m.group(1), m.group(2), i + 1))
            i += 1
            continue
        f = FENCE.match(line)
        if not f:
            if line.strip():
                if markers:
                    raise FormatError(f"{path}:{markers[0][2]}: a snippet marker not followed by a fence")
            i += 1
            continue
        indent, fence, info = f.groups()
        lang = info.strip().split(",")[0].split(" ")[0].lower()
        body: List[str] = []
        j = i + 1
        while j < len(lines):
            close = lines[j].strip()
            if close.startswith(fence[0] * len(fence)) and not close.strip(fence[0]):
                break
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j])
            j += 1
        else:
            raise FormatError(f"{path}:{i + 1}: unclosed fence")
        if not lang:
            raise FormatError(f"{path}:{i + 1}: a fence without an info string (use `text` for output and listings)")
        if lang not in RUN and lang not in NEVER:
            raise FormatError(f"{path}:{i + 1}: unknown fence language {lang!r} (runnable: {sorted(RUN)}; "
                              f"never run: {sorted(NEVER)})")
        b = Block(path, i + 1, lang, "\n".join(body) + "\n")
        for kind, arg, at in markers:
            if kind == "skip":
                if not arg:
                    raise FormatError(f"{path}:{at}: `snippet: skip` needs a reason")
                b.skip = arg
            elif kind == "expect":
                b.expect += shlex.split(arg)
            elif kind == "excerpt":
                b.excerpt = (path.parent / arg).resolve()
            elif kind == "output-of":
                if lang != "text" or not arg:
                    raise FormatError(f"{path}:{at}: `snippet: output-of CMD` belongs on a `text` block")
                b.output_of = arg
            else:
                raise FormatError(f"{path}:{at}: unknown snippet marker {kind!r}")
        if markers and lang in NEVER and b.output_of is None:
            raise FormatError(f"{path}:{i + 1}: a snippet marker on a `{lang}` block, which never runs")
        markers = []
        blocks.append(b)
        i = j + 1
    if markers:
        raise FormatError(f"{path}:{markers[0][2]}: a snippet marker at the end of the file")
    return blocks


# ---------------------------------------------------------------------------
# Running


class Runner:
    def __init__(self) -> None:
        self.tmp = Path(os.environ.get("SNIPPET_TMP") or "/tmp/fal-rt-snippets")
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.target = Path(os.environ.get("SNIPPET_TARGET") or ROOT / "target")
        self.python = os.environ.get("SNIPPET_PYTHON") or sys.executable
        self.libdir = self.target / "release"
        self.rust_target = self.target / "snippets"
        self.env = dict(os.environ)
        self.env["PATH"] = f"{self.libdir}:{self.env.get('PATH', '')}"
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.rust_bins: Dict[int, Optional[Path]] = {}

    def report(self, b: Block, ok: bool, what: str = "", out: str = "") -> None:
        if ok:
            self.passed += 1
            print(f"ok - {b.where} {b.lang}{what}", flush=True)
        else:
            self.failed += 1
            print(f"FAILED - {b.where} {b.lang}{what}", flush=True)
            tail = out.strip().splitlines()[-40:]
            for line in tail:
                print(f"    {line}")

    def run_cmd(self, b: Block, cmd: List[str], cwd: Path, timeout: Optional[int] = None) -> Tuple[bool, str, str]:
        """Run in its own process group; kill the group afterwards (background jobs too).

        Output goes to a file, not a pipe: a background job (`serve &`) keeps a
        pipe open after the snippet itself has exited."""
        limit = timeout or TIMEOUT[b.lang]
        started = time.monotonic()
        log = self.tmp / f"run-{os.getpid()}.log"
        with open(log, "w+", encoding="utf-8", errors="replace") as f:
            p = subprocess.Popen(cmd, cwd=cwd, env=self.env, stdout=f, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
            timed_out = False
            try:
                rc = p.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                timed_out = True
                rc = -1
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    break
                time.sleep(0.2)
            if timed_out:
                p.wait()
            f.seek(0)
            out = f.read()
        secs = f" ({time.monotonic() - started:.1f} s)"
        if timed_out:
            return False, out + f"\n(timed out after {limit} s)", secs
        missing = [e for e in b.expect if e not in out]
        if rc != 0:
            return False, out + f"\n(exit status {rc})", secs
        if missing:
            return False, out + f"\n(output lacks {missing!r})", secs
        return True, out, secs

    def work(self, b: Block, suffix: str) -> Path:
        name = re.sub(r"[^A-Za-z0-9]+", "_", b.where)
        d = self.tmp / name
        d.mkdir(parents=True, exist_ok=True)
        return d / f"snippet{suffix}"

    def run(self, b: Block) -> None:
        if b.excerpt is not None:
            if not b.excerpt.is_file():
                return self.report(b, False, "", f"excerpt source {b.excerpt} is missing")
            if b.code.strip() not in b.excerpt.read_text(encoding="utf-8"):
                return self.report(b, False, "", f"the block is not a verbatim excerpt of {b.excerpt}")
        getattr(self, f"run_{b.lang}")(b)

    def run_text(self, b: Block) -> None:
        """A `text` block that is the output of a command: compared exactly."""
        assert b.output_of is not None
        src = self.work(b, ".sh")
        src.write_text(b.output_of + "\n", encoding="utf-8")
        ok, out, secs = self.run_cmd(b, ["bash", "-e", str(src)], ROOT, timeout=60)
        if ok and out != b.code:
            diff = difflib.unified_diff(b.code.splitlines(True), out.splitlines(True), "README", b.output_of)
            ok, out = False, "".join(diff) + "\n(the block is not the command's output: paste it again)"
        self.report(b, ok, f" (output of {b.output_of}){secs}", out)

    def run_python(self, b: Block) -> None:
        if b.excerpt is not None:
            src = b.excerpt
        else:
            src = self.work(b, ".py")
            src.write_text(b.code, encoding="utf-8")
        ok, out, secs = self.run_cmd(b, [self.python, str(src)], src.parent)
        self.report(b, ok, (f" (excerpt of {b.excerpt.name})" if b.excerpt else "") + secs, out)

    def run_sh(self, b: Block) -> None:
        src = self.work(b, ".sh")
        src.write_text(b.code, encoding="utf-8")
        ok, out, secs = self.run_cmd(b, ["bash", "-e", str(src)], ROOT)
        self.report(b, ok, secs, out)

    run_bash = run_sh

    def compile_and_run(self, b: Block, compiler: List[str], suffix: str) -> None:
        src = self.work(b, suffix)
        src.write_text(b.code, encoding="utf-8")
        exe = src.with_suffix("")
        cc = subprocess.run(
            compiler + [str(src), "-o", str(exe), f"-L{self.libdir}", "-lfal_realtime",
                        f"-Wl,-rpath,{self.libdir}", "-lpthread"],
            cwd=src.parent, capture_output=True, text=True, timeout=120)
        if cc.returncode != 0:
            return self.report(b, False, " (compile)", cc.stdout + cc.stderr)
        ok, out, secs = self.run_cmd(b, [str(exe)], src.parent)
        self.report(b, ok, secs, out)

    def run_c(self, b: Block) -> None:
        self.compile_and_run(b, ["gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", f"-I{ROOT / 'include'}"], ".c")

    def run_cpp(self, b: Block) -> None:
        self.compile_and_run(b, ["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", f"-I{ROOT / 'include'}",
                                 f"-I{ROOT / 'bindings/c/include'}"], ".cpp")

    def build_rust(self, blocks: List[Block]) -> str:
        """All Rust snippets as the [[bin]]s of one package: dependencies compile once."""
        pkg = self.tmp / "rust"
        (pkg / "src").mkdir(parents=True, exist_ok=True)
        bins = []
        for n, b in enumerate(blocks):
            (pkg / "src" / f"snippet_{n}.rs").write_text(b.code, encoding="utf-8")
            bins.append(f'[[bin]]\nname = "snippet_{n}"\npath = "src/snippet_{n}.rs"\n')
        # The dependencies the root README's [dependencies] block lists.
        (pkg / "Cargo.toml").write_text(
            '[package]\nname = "readme-snippets"\nversion = "0.0.0"\nedition = "2021"\npublish = false\n\n'
            "[workspace]\n\n"
            f'[dependencies]\nfal-realtime = {{ path = "{ROOT}" }}\n'
            'serde = { version = "1", features = ["derive"] }\nserde_json = "1"\n'
            'tokio = { version = "1", features = ["macros", "rt-multi-thread"] }\n\n' + "\n".join(bins),
            encoding="utf-8")
        shutil.copy(ROOT / "Cargo.lock", pkg / "Cargo.lock")  # the versions the crate is tested with
        # A target dir of its own: this crate builds an rlib + cdylib, whose file
        # names carry no hash, so sharing the workspace's would overwrite its
        # libfal_realtime.rlib with one built against other dependency features.
        bindir = self.rust_target / "debug"
        for n in range(len(blocks)):
            (bindir / f"snippet_{n}").unlink(missing_ok=True)
        print(f"building {len(blocks)} Rust snippet(s) (one package, {pkg}; target {self.rust_target})", flush=True)
        r = subprocess.run(["cargo", "build", "--keep-going", "--bins", "--quiet"],
                           cwd=pkg, env=dict(self.env, CARGO_TARGET_DIR=str(self.rust_target)),
                           capture_output=True, text=True, timeout=1800)
        for n, _ in enumerate(blocks):
            exe = bindir / f"snippet_{n}"
            self.rust_bins[n] = exe if exe.is_file() else None
        return r.stdout + r.stderr

    def run_all(self, blocks: List[Block]) -> None:
        only = {s for s in os.environ.get("SNIPPET_ONLY", "").split(",") if s}
        rust = [b for b in blocks if b.runs and b.lang == "rust" and (not only or "rust" in only)]
        rust_log = self.build_rust(rust) if rust else ""
        for b in blocks:
            if not b.runs:
                if b.lang in RUN:
                    self.skipped += 1
                    print(f"skip - {b.where} {b.lang}: {b.skip}")
                continue
            if only and b.lang not in only:
                continue
            if b.lang == "go" and shutil.which("go") is None:
                self.skipped += 1
                print(f"skip - {b.where} go: no go toolchain here (scripts/test-go.sh installs it)")
                continue
            if b.lang == "csharp" and (shutil.which("mcs") is None or shutil.which("mono") is None):
                self.skipped += 1
                print(f"skip - {b.where} csharp: no Mono here (scripts/test-csharp.sh installs mono-devel)")
                continue
            if b.lang == "rust":
                n = rust.index(b)
                exe = self.rust_bins.get(n)
                if exe is None:
                    self.report(b, False, f" (compile: src/snippet_{n}.rs)", rust_log)
                    continue
                ok, out, secs = self.run_cmd(b, [str(exe)], self.tmp)
                self.report(b, ok, secs, out)
                continue
            self.run(b)
        print(f"snippets: {self.passed} passed, {self.failed} failed, {self.skipped} skipped")

    def run_go(self, b: Block) -> None:
        src = self.work(b, ".go")
        mod = src.parent
        src.with_name("main.go").write_text(b.code, encoding="utf-8")
        src.unlink(missing_ok=True)
        (mod / "go.mod").write_text(
            "module snippet\n\ngo 1.19\n\nrequire github.com/fal-ai/fal-realtime/bindings/go v0.0.0\n\n"
            f"replace github.com/fal-ai/fal-realtime/bindings/go => {ROOT / 'bindings/go'}\n", encoding="utf-8")
        env = dict(self.env, GOFLAGS="-mod=mod", GOTOOLCHAIN="local",
                   GOCACHE=self.env.get("GOCACHE", str(self.target / "go-cache")))
        saved, self.env = self.env, env
        try:
            ok, out, secs = self.run_cmd(b, ["go", "run", "."], mod)
        finally:
            self.env = saved
        self.report(b, ok, secs, out)

    def run_csharp(self, b: Block) -> None:
        """Compiled with Mono's mcs against bindings/csharp/FalRealtime.cs, run with mono."""
        src = self.work(b, ".cs")
        src.write_text(b.code, encoding="utf-8")
        dll = src.parent / "FalRealtime.dll"
        steps = [["mcs", "-warnaserror", "-target:library", f"-out:{dll}", str(ROOT / "bindings/csharp/FalRealtime.cs")],
                 ["mcs", "-warnaserror", f"-r:{dll}", f"-out:{src.with_suffix('.exe')}", str(src)]]
        for cmd in steps:
            cc = subprocess.run(cmd, cwd=src.parent, capture_output=True, text=True, timeout=120)
            if cc.returncode != 0:
                return self.report(b, False, " (compile)", cc.stdout + cc.stderr)
        saved = self.env
        self.env = dict(saved, LD_LIBRARY_PATH=f"{self.libdir}:{saved.get('LD_LIBRARY_PATH', '')}")
        try:
            ok, out, secs = self.run_cmd(b, ["mono", "--debug", str(src.with_suffix(".exe"))], src.parent)
        finally:
            self.env = saved
        self.report(b, ok, secs, out)


def selftest() -> int:
    """The parser's rules, on made-up READMEs: what must be refused is refused."""
    import tempfile

    cases = {
        "```\nx\n```\n": "without an info string",
        "```pascal\nx\n```\n": "unknown fence language",
        "```python\nx\n": "unclosed fence",
        "<!-- snippet: skip -->\n```sh\nx\n```\n": "needs a reason",
        "<!-- snippet: frobnicate x -->\n```sh\nx\n```\n": "unknown snippet marker",
        "<!-- snippet: skip (r) -->\ntext\n```sh\nx\n```\n": "not followed by a fence",
        "<!-- snippet: expect \"a\" -->\n```text\nx\n```\n": "never runs",
        "<!-- snippet: output-of echo -->\n```sh\nx\n```\n": "belongs on a `text` block",
        "```sh\nx\n```\n<!-- snippet: skip (r) -->\n": "at the end of the file",
    }
    bad = 0
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "README.md"
        for text, want in cases.items():
            f.write_text(text, encoding="utf-8")
            try:
                parse(f)
                got = "accepted"
            except FormatError as e:
                got = str(e)
            if want not in got:
                bad += 1
                print(f"FAILED - selftest {text!r}: want {want!r}, got {got!r}")
        f.write_text('<!-- snippet: skip (r) -->\n\n```sh\nexit 1\n```\n\n<!-- snippet: expect "a b" c -->\n'
                     '````python\n```\nprint(1)\n````\n```text\nout\n```\n', encoding="utf-8")
        blocks = parse(f)
        got = [(b.lang, b.runs, b.skip, b.expect, b.code) for b in blocks]
        want = [("sh", False, "(r)", [], "exit 1\n"), ("python", True, None, ["a b", "c"], "```\nprint(1)\n"),
                ("text", False, None, [], "out\n")]
        if got != want:
            bad += 1
            print(f"FAILED - selftest parse: {got!r} != {want!r}")
    print(f"selftest: {len(cases) + 1 - bad} passed, {bad} failed")
    return 1 if bad else 0


def main() -> int:
    cmd = sys.argv[1] if len(sys.argv) > 1 else "list"
    if cmd == "selftest":
        return selftest()
    files = [Path(p).resolve() for p in sys.argv[2:]] or readmes()
    try:
        blocks = [b for f in files for b in parse(f)]
    except FormatError as e:
        print(f"snippets: {e}")
        return 1
    if cmd == "list":
        for b in blocks:
            what = ("run" + (f", expect {b.expect}" if b.expect else "") +
                    (f", excerpt of {b.excerpt.relative_to(ROOT)}" if b.excerpt else "")
                    if b.runs else f"skip: {b.skip}" if b.lang in RUN else "never run")
            print(f"{b.where}\t{b.lang}\t{what}")
        return 0
    if cmd != "run":
        print(__doc__)
        return 2
    r = Runner()
    r.run_all(blocks)
    return 0 if r.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
