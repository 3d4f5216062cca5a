"""Docs that cannot rot: every relative link and image in README.md, README.zh-CN.md and docs/*.md resolves to a
file (and to a heading, for #anchors), and every command in them is parsed by the real parsers.

Commands are read from fenced code blocks and from `inline code`, except inline synopses (with `...` or `[`).
A fenced command whose comment is `# error: MESSAGE` shows a refusal: if its parser refuses it, the message
must be MESSAGE. Nothing is run: each command's flags go through its script's own parser, in a second or two.
"""

import contextlib
import glob
import importlib
import io
import os
import re
import shlex

import pytest

from conftest import REPO

from training import cli, commands

DOC_FILES = ["README.md", "README.zh-CN.md", *sorted(os.path.relpath(path, REPO)
                                                     for path in glob.glob(os.path.join(REPO, "docs", "*.md")))]
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\)")
HTML_LINK = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", re.IGNORECASE)
SCRIPTS = ("train.py", "evaluate.py", "generate.py", "reproduce.py")
SEPARATORS = re.compile(r"&&|\|\||[;|]")


def doc_lines(path):
    """(line number, text, in a fenced code block) for each line of a markdown file."""
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    fenced = False
    for number, line in enumerate(lines, 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        yield number, line, fenced


def heading_anchors(path):
    """The #anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    anchors, seen = set(), {}
    for _, line, fenced in doc_lines(path):
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fenced or not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def link_problems(path, root=REPO):
    """Each relative link or image of a markdown file that does not resolve, as `file:line: message`."""
    problems = []
    shown = os.path.relpath(path, root)
    for number, line, fenced in doc_lines(path):
        if fenced:
            continue
        prose = INLINE_CODE.sub("", line)
        for target in LINK.findall(prose) + HTML_LINK.findall(prose):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            linked = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
            if not os.path.exists(linked):
                problems.append(f"{shown}:{number}: link to {target}: {os.path.relpath(linked, root)} does not exist")
            elif anchor and linked.endswith(".md") and anchor not in heading_anchors(linked):
                problems.append(f"{shown}:{number}: link to {target}: no heading with the anchor #{anchor} "
                                f"in {os.path.relpath(linked, root)}")
    return problems


def commands_in(path):
    """(line number, command as typed, (env, argv after `python`), the `# error:` it shows or None) for each
    command in a markdown file's code."""
    found = []
    pending = ""  # a fenced line ending in a backslash continues on the next
    for number, line, fenced in doc_lines(path):
        if fenced:
            pieces = [pending + line.strip()]
            if pieces[0].endswith("\\"):
                pending = pieces[0][:-1] + " "
                continue
            pending = ""
        else:
            pieces = [code for _, code in INLINE_CODE.findall(line) if "..." not in code and "[" not in code]
        for piece in pieces:
            piece, _, comment = piece.partition("# error: ") if fenced else (piece, "", "")
            for segment in SEPARATORS.split(piece.lstrip("$ ")):
                argv = command_argv(segment)
                if argv is not None:
                    found.append((number, segment.strip(), argv, comment.strip() or None))
    return found


def command_argv(segment):
    """`VAR=x python script flags...` -> (env, [script or -m module, flags...]); None if not a command of ours."""
    try:
        tokens = shlex.split(segment, comments=True)
    except ValueError:
        return None
    env = {}
    while tokens and re.match(r"^[A-Z_][A-Z0-9_]*=", tokens[0]):
        name, _, value = tokens.pop(0).partition("=")
        env[name] = value
    if len(tokens) < 2 or tokens[0] not in ("python", "python3"):
        return None
    if tokens[1] in SCRIPTS or (tokens[1] == "-m" and len(tokens) > 2 and tokens[2].split(".")[0] == "bench"):
        return env, tokens[1:]
    return None


def parse_train_flags(argv):
    cli.parse_args(argv)


def parse_with(module_name):
    def parse(argv):
        importlib.import_module(module_name).build_parser().parse_args(argv)
    return parse


def parse_reproduce(argv):
    importlib.import_module("reproduce").resolve(argv)  # also checks --only's groups and --quick's --out


def parse_bench_threads(argv):
    args = importlib.import_module("bench.threads").build_parser().parse_args(argv)
    cli.parse_args([args.model, *shlex.split(args.train_flags)])


def parse_bench_profile(argv):
    """bench.profile takes train.py's flags, and its own --log-dir DIR."""
    if "--log-dir" in argv:
        index = argv.index("--log-dir")
        argv = argv[:index] + argv[index + 2:]
    cli.parse_args(argv)


PARSERS = {"train.py": parse_train_flags, "evaluate.py": parse_with("evaluate"), "generate.py": parse_with("generate"),
           "reproduce.py": parse_reproduce, "bench": parse_with("bench.__main__"),
           "bench.threads": parse_bench_threads, "bench.profile": parse_bench_profile,
           "bench.lstm_step": parse_with("bench.lstm_step"),
           "bench.transformer_step": parse_with("bench.transformer_step")}


@contextlib.contextmanager
def environment(values):
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def command_problem(env, argv):
    """Why the real parser refuses argv (its `error:` message), or None if it parses."""
    script, flags = (argv[1], argv[2:]) if argv[0] == "-m" else (argv[0], argv[1:])
    if script not in PARSERS:
        return f"no parser known for {script}; add it to PARSERS in tests/test_docs.py"
    stderr = io.StringIO()
    try:
        with environment(env), contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            PARSERS[script](flags)
    except commands.UsageError as exc:
        return str(exc)
    except SystemExit as exc:  # --help exits 0; commands.fail exits 2 after an `error:` line
        return (stderr.getvalue().strip().removeprefix("error: ") or "the parser exited") if exc.code else None
    return None


def command_problems(path, root=REPO):
    shown = os.path.relpath(path, root)
    problems = []
    for number, typed, (env, argv), shown_error in commands_in(path):
        problem = command_problem(env, argv)
        if shown_error is not None and problem is not None and problem != shown_error:
            problems.append(f"{shown}:{number}: `{typed}`: refused with `error: {problem}`, "
                            f"where the page shows `error: {shown_error}`")
        elif shown_error is None and problem is not None:
            problems.append(f"{shown}:{number}: `{typed}`: {problem}")
    return problems


def test_every_link_and_image_resolves():
    problems = [problem for name in DOC_FILES for problem in link_problems(os.path.join(REPO, name))]
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_every_command_parses():
    commands = {name: commands_in(os.path.join(REPO, name)) for name in DOC_FILES}
    seen = {argv[1] if argv[0] == "-m" else argv[0] for found in commands.values() for _, _, (_, argv), _ in found}
    assert {"train.py", "evaluate.py", "generate.py", "reproduce.py", "bench"} <= seen, seen  # not vacuous
    problems = [problem for name in DOC_FILES for problem in command_problems(os.path.join(REPO, name))]
    assert not problems, "commands the parsers refuse:\n" + "\n".join(problems)


def test_each_page_opens_with_the_chapter_map_and_is_linked_from_the_readme():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    assert len(readme.split("\n")) <= 220, "README.md is the front door: keep it near 200 lines"
    for page in ("gan", "vae", "text", "engine", "speed", "input"):
        assert f"docs/{page}.md" in readme, page
        assert os.path.isfile(os.path.join(REPO, "docs", f"{page}.md")), page


def test_the_checks_catch_a_broken_link_flag_value_and_subcommand(tmp_path):
    (tmp_path / "there.md").write_text("# A page\n\n## Its part\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text("\n".join([
        "# Title",
        "[fine](there.md#its-part) and ![a missing figure](figures/none.png)",
        "[a missing anchor](there.md#no-such-part), [fine](#title), <img src=\"gone.png\">",
        "```bash",
        "python train.py gan --arch dcgan --epochs 3 && python evaluate.py outputs/gan/run  # fine",
        "python train.py vae --no-such-flag 3",
        "python train.py gan \\",
        "    --arch resnet",
        "TF_CONFIG='{\"cluster\": {\"worker\": [\"a:1\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}' "
        "python train.py gan --strategy multi-worker",
        "python train.py gan --strategy multi-worker",
        "python train.py gan --seed -1  # error: --seed must be in [0, 2**32), got -1",
        "python train.py gan --seed -2  # error: a message the parser does not give",
        "```",
        "Inline: `python train.py diffusion --epochs 1`, `python reproduce.py --only gan,bogus --out x`, "
        "a synopsis `python train.py MODEL [flags]` is skipped.",
    ]), encoding="utf-8")
    links = link_problems(str(page), root=str(tmp_path))
    assert links == ["page.md:2: link to figures/none.png: figures/none.png does not exist",
                     "page.md:3: link to there.md#no-such-part: no heading with the anchor #no-such-part in there.md",
                     "page.md:3: link to gone.png: gone.png does not exist"]
    problems = command_problems(str(page), root=str(tmp_path))
    assert len(problems) == 6, problems
    assert problems[0].startswith("page.md:6: `python train.py vae --no-such-flag 3`: ")
    assert "unrecognized arguments: --no-such-flag 3" in problems[0]
    assert problems[1].startswith("page.md:8: ") and "argument --arch: invalid choice: 'resnet'" in problems[1]
    assert problems[2].startswith("page.md:10: ") and "needs TF_CONFIG" in problems[2]
    assert problems[3] == ("page.md:12: `python train.py gan --seed -2`: refused with `error: --seed must be in "
                           "[0, 2**32), got -2`, where the page shows `error: a message the parser does not give`")
    assert problems[4].startswith("page.md:14: ") and "invalid choice: 'diffusion'" in problems[4]
    assert problems[5].startswith("page.md:14: ") and "--only takes groups" in problems[5]


@pytest.mark.parametrize("model", sorted(cli.build_parser()._subparsers._group_actions[0].choices))
def test_any_subcommand_of_train_py_is_parsed(model):
    """A `python train.py MODEL ...` line parses once MODEL is a subcommand, with no change here."""
    assert command_problem({}, ["train.py", model, "--seed", "1", "--quiet"]) is None
    assert "unrecognized arguments: --no-such-flag" in command_problem({}, ["train.py", model, "--no-such-flag"])
