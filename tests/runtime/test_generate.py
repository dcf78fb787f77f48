"""
The fast-path generator (``supervisor/_backends/_generate.py``) on toy templates and handlers:
what inlining writes (renamed parameters, prefixed locals, the return forms, defaults, imports),
what it refuses (each message pinned), that it is deterministic, that the generated module is
ruff-clean, and that the generated code behaves like the template calling the real methods.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import types
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from supervisor._backends import _generate
from supervisor._backends._generate import GenerateError, format_source, generate

HANDLERS = "_toy_handlers"  # the toy modules' dotted names
TEMPLATE = "_toy_template"


def gen(template: str, handlers: str) -> str:
    source = generate(
        textwrap.dedent(template),
        textwrap.dedent(handlers),
        template_module=TEMPLATE,
        handlers_module=HANDLERS,
    )
    return source.split("\n", 5)[5]  # without the header


def actor(methods: str, prelude: str = "") -> str:
    """A handlers module: ``inline``, then *prelude*, then ``class Actor`` with *methods*."""
    methods = textwrap.indent(textwrap.dedent(methods).lstrip("\n"), "    ")
    return f"def inline(fn):\n    return fn\n{textwrap.dedent(prelude)}\n\nclass Actor:\n{methods}"


def run(body: str) -> str:
    """A template module: ``async def run(self, x, y)`` with *body*."""
    body = textwrap.indent(textwrap.dedent(body).lstrip("\n"), "    ")
    return f"async def run(self, x, y):\n{body}"


# --------------------------------------------------------------------------- what it writes


def test_parameters_become_the_arguments_and_locals_are_prefixed() -> None:
    handlers = actor("""
        @inline
        def add(self, a, b):
            '''The docstring is dropped.'''
            # a handler's comment stays
            total = a + b  # so does this one
            self.total = total
            try:
                self.check(total)
            except ValueError as exc:
                self.errors.append(exc)
    """)
    template = run("""
        z = 1  # the template's comments stay
        self.add(y, 2)
        self.add(b=x, a=z)  # type: ignore[call-arg]
    """)
    assert gen(template, handlers) == textwrap.dedent("""\
        async def run(self, x, y):
            z = 1  # the template's comments stay
            # inlined: Actor.add
            # a handler's comment stays
            _h_add_total = y + 2  # so does this one
            self.total = _h_add_total
            try:
                self.check(_h_add_total)
            except ValueError as _h_add_exc:
                self.errors.append(_h_add_exc)
            # inlined: Actor.add
            # a handler's comment stays
            _h_add_total = z + x  # so does this one
            self.total = _h_add_total
            try:
                self.check(_h_add_total)
            except ValueError as _h_add_exc:
                self.errors.append(_h_add_exc)  # type: ignore[call-arg]
    """)


def test_a_final_return_becomes_an_assignment_or_its_call_or_nothing() -> None:
    handlers = actor("""
        @inline
        def value(self, a):
            return a + self.base

        @inline
        def notify(self):
            return self.send(1)

        @inline
        def stop(self):
            self.stopped = True
            return

        @inline
        def nothing(self):
            return None
    """)
    template = run("""
        r = self.value(x)
        self.value(x)
        self.notify()
        self.stop()
        if y:
            self.nothing()
    """)
    assert gen(template, handlers) == textwrap.dedent("""\
        async def run(self, x, y):
            # inlined: Actor.value
            r = x + self.base
            # inlined: Actor.value
            pass
            # inlined: Actor.notify
            self.send(1)
            # inlined: Actor.stop
            self.stopped = True
            if y:
                # inlined: Actor.nothing
                pass
    """)
    # formatting removes the `pass` a block does not need
    assert "# inlined: Actor.value\n    # inlined: Actor.notify\n" in format_source(
        gen(template, handlers)
    )


def test_defaults_fill_the_arguments_left_out_and_constants_are_parenthesised_where_needed() -> (
    None
):
    handlers = actor(
        """
        @inline
        def bump(self, by=1, *, what=KIND, scale=2.5):
            self.counts[what] += by * scale
            self.flag = by.bit_length()
        """,
        prelude="KIND = 'calls'",
    )
    template = run("""
        self.bump()
        self.bump(x, scale=y)
    """)
    assert gen(template, handlers) == textwrap.dedent("""\
        from _toy_handlers import KIND
        async def run(self, x, y):
            # inlined: Actor.bump
            self.counts[KIND] += 1 * 2.5
            self.flag = (1).bit_length()
            # inlined: Actor.bump
            self.counts[KIND] += x * y
            self.flag = x.bit_length()
    """)


def test_a_statement_spanning_lines_is_reindented_and_its_strings_kept() -> None:
    handlers = actor("""
        @inline
        def h(self, a):
            if a:
                self.log(
                    "one "
                    "two",
                    a,
                )
    """)
    assert gen(run("self.h(x)\n"), handlers) == textwrap.dedent("""\
        async def run(self, x, y):
            # inlined: Actor.h
            if x:
                self.log(
                    "one "
                    "two",
                    x,
                )
    """)


def test_underscore_locals_stay_underscores() -> None:
    handlers = actor("""
        @inline
        def pop(self):
            key, _ = self.queue.popitem()
            self.key = key
    """)
    assert gen(run("self.pop()\n"), handlers) == textwrap.dedent("""\
        async def run(self, x, y):
            # inlined: Actor.pop
            _h_pop_key, _ = self.queue.popitem()
            self.key = _h_pop_key
    """)


def test_a_handler_calling_a_handler_is_inlined_into_it() -> None:
    handlers = actor("""
        @inline
        def outer(self, a):
            b = a + 1
            c = self.inner(b)
            self.inner(c)

        @inline
        def inner(self, a):
            b = a * 2
            return b
    """)
    assert gen(run("self.outer(x)\n"), handlers) == textwrap.dedent("""\
        async def run(self, x, y):
            # inlined: Actor.outer
            _h_outer_b = x + 1
            # inlined: Actor.inner
            _h_outer_c = _h_outer_b * 2
            # inlined: Actor.inner
            _h_inner_b = _h_outer_c * 2
    """)


def test_the_globals_the_bodies_load_are_imported_unless_the_template_has_them() -> None:
    handlers = actor(
        """
        @inline
        def h(self, a):
            self.x = (LIMIT, helper(a), math.pi, os.sep, Queue, Err, Ready, len(a))
            self.y = (Shared, Other)
        """,
        prelude="""
        import math
        import os.path as os
        from collections import deque as Queue
        from ._errors import Err
        from .. import Ready
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from x import Other
        else:
            Other = object
        LIMIT = 3
        def helper(a):
            return a
        class Shared:
            pass
        """,
    )
    template = '"""Doc."""\nfrom __future__ import annotations\n\nfrom pkg import Shared\n\n'
    out = generate(
        template + run("self.h(x)\n"),
        handlers,
        template_module="pkg.sub._template",
        handlers_module="pkg.sub._handlers",
    )
    header, source = out.split("\n", 5)[:5], out.split("\n", 5)[5]
    assert header[-1] == "# from pkg/sub/_template.py and pkg/sub/_handlers.py."
    assert source.startswith(
        textwrap.dedent('''\
            """Doc."""
            from __future__ import annotations

            from pkg import Shared
            from collections import deque as Queue
            from pkg import Ready
            from pkg.sub._errors import Err
            from pkg.sub._handlers import LIMIT
            from pkg.sub._handlers import Other
            from pkg.sub._handlers import helper
            import math
            import os.path as os

            async def run(self, x, y):
        ''')
    )


def test_the_generated_module_is_formatted_and_passes_the_project_ruff_check() -> None:
    source = format_source(generate(*TOY, template_module=TEMPLATE, handlers_module=HANDLERS))
    assert source.startswith(
        "# ***********************************************************\n"
        "# ******* WARNING: AUTOGENERATED! ALL EDITS WILL BE LOST ******\n"
        "# ***********************************************************\n"
        "# Regenerate with `make generate` (python -m supervisor._backends._generate)\n"
        "# from _toy_template.py and _toy_handlers.py.\n"
    )
    assert (
        "import math\nfrom typing import Any\n\nfrom _toy_handlers import LIMIT, Actor, Full, _clip\n"
        in source
    )
    assert source.count("# inlined: Actor.") == 5
    check = [sys.executable, "-m", "ruff", "check", "--stdin-filename", _generate.OUTPUT, "-"]
    done = subprocess.run(check, input=source, capture_output=True, text=True, cwd=_generate.ROOT)
    assert (done.returncode, done.stdout) == (0, "All checks passed!\n")


def test_without_ruff_the_source_is_left_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\necho 'No module named ruff' >&2\nexit 1\n")
    python.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(python))
    assert format_source("x  =  1\n") == "x  =  1\n"
    assert capsys.readouterr().err == (
        "ruff is not installed: the generated module is left unformatted\n"
    )


def test_generating_twice_gives_the_same_text() -> None:
    first = generate(*TOY, template_module=TEMPLATE, handlers_module=HANDLERS)
    assert generate(*TOY, template_module=TEMPLATE, handlers_module=HANDLERS) == first
    formatted = format_source(first)
    assert format_source(formatted) == formatted


# --------------------------------------------------------------------------- what it refuses

BODY = """
    @inline
    def h(self, a, b=2):
        {}
        return a
"""


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("x = await a", "Actor.h, line 8: `await` is not allowed in an @inline handler"),
        ("for i in a: pass", "Actor.h, line 8: a loop is not allowed in an @inline handler"),
        ("while a: pass", "Actor.h, line 8: a loop is not allowed in an @inline handler"),
        ("x = [i for i in a]", "Actor.h, line 8: a loop is not allowed in an @inline handler"),
        ("def f(): pass", "Actor.h, line 8: a nested def is not allowed in an @inline handler"),
        ("f = lambda: 1", "Actor.h, line 8: a nested def is not allowed in an @inline handler"),
        ("with a: pass", "Actor.h, line 8: `with` is not allowed in an @inline handler"),
        (
            "global g",
            "Actor.h, line 8: `global` or `nonlocal` is not allowed in an @inline handler",
        ),
        (
            "if a: return 1",
            "Actor.h, line 8: an early `return` is not allowed in an @inline handler",
        ),
        ("yield a", "Actor.h, line 8: `yield` is not allowed in an @inline handler"),
        ("import os", "Actor.h, line 8: `Import` is not allowed in an @inline handler"),
        ("super().h(a)", "Actor.h, line 8: `super()` is not allowed in an @inline handler"),
        (
            "self.__x = 1",
            "Actor.h, line 8: a name-mangled attribute `__x` is not allowed in an @inline handler",
        ),
        (
            "self.f('''\n        ''')",
            "Actor.h, line 8: a string spanning lines is not allowed in an @inline handler",
        ),
        (
            "self.f(f'''{a}\n        ''')",
            "Actor.h, line 8: a string spanning lines is not allowed in an @inline handler",
        ),
        (
            "self.f('a\\\n        b')",
            "Actor.h, line 8: a string spanning lines is not allowed in an @inline handler",
        ),
    ],
)
def test_a_handler_that_is_not_straight_line_is_refused(line: str, message: str) -> None:
    with pytest.raises(
        GenerateError, match=f"^{re.escape(message + ' (straight-line code only)')}$"
    ):
        gen(run("self.h(x)\n"), actor(BODY.format(line)))


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        (
            "@inline\nasync def h(self):\n    pass\n",
            "Actor.h, line 7: an @inline handler is a `def` of `self` and named parameters",
        ),
        (
            "@inline\ndef h(self, *a):\n    pass\n",
            "Actor.h, line 7: an @inline handler is a `def` of `self` and named parameters",
        ),
        (
            "@inline\ndef h(self, a):\n    a = 1\n",
            "Actor.h, line 8: assigns its parameter `a` (the caller's, inlined)",
        ),
        (
            "@inline\ndef h(self, a): self.a = a\n",
            "Actor.h, line 7: an @inline handler's body starts on a line of its own",
        ),
    ],
)
def test_a_handler_with_a_bad_signature_or_assigning_a_parameter_is_refused(
    handler: str, message: str
) -> None:
    with pytest.raises(GenerateError, match=f"^{re.escape(message)}$"):
        gen(run("pass\n"), actor(handler))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "self.h(x.y)",
            "run(), line 2: self.h(...): argument `a` must be a name or a constant, got `x.y`",
        ),
        (
            "self.h(x, b=f(y))",
            "run(), line 2: self.h(...): argument `b` must be a name or a constant, got `f(y)`",
        ),
        (
            "self.h(*x)",
            "run(), line 2: self.h(...): argument `a` must be a name or a constant, got `*x`",
        ),
        ("self.h()", "run(), line 2: self.h(...): the arguments do not fit Actor.h"),
        ("self.h(1, 2, 3)", "run(), line 2: self.h(...): the arguments do not fit Actor.h"),
        ("self.h(1, c=3)", "run(), line 2: self.h(...): unexpected argument `c`"),
        ("self.h(1, a=3)", "run(), line 2: self.h(...): unexpected argument `a`"),
        (
            "return self.h(x)",
            "run(), line 2: call @inline Actor.h as `self.h(...)` or `name = self.h(...)`",
        ),
        (
            "f(self.h(x))",
            "run(), line 2: call @inline Actor.h as `self.h(...)` or `name = self.h(...)`",
        ),
        (
            "self.z = self.h(x)",
            "run(), line 2: call @inline Actor.h as `self.h(...)` or `name = self.h(...)`",
        ),
        (
            "a = b = self.h(x)",
            "run(), line 2: call @inline Actor.h as `self.h(...)` or `name = self.h(...)`",
        ),
        ("y = 1; self.h(x)", "run(), line 2: self.h(...) needs a line of its own"),
        ("self.h(x); y = 1", "run(), line 2: self.h(...) needs a line of its own"),
        ("if x: self.h(x)", "run(), line 2: self.h(...) needs a line of its own"),
        ("self.t()", "Actor.t, line 33: self.h(...) needs a line of its own"),
        (
            "self.d(x)",
            "run(), line 2: self.d(...): the default `b` must be a name or a constant, got `[]`",
        ),
        ("r = self.g()", "run(), line 2: Actor.g returns nothing to assign to `r`"),
        (
            "self.k()",
            "Actor.k, line 17: loads the global `x`, a local of run(): rename one",
        ),
        (
            "self.u()",
            "Actor.u, line 21: `nowhere` is neither a builtin nor a global of _toy_handlers",
        ),
        (
            "self.r()",
            "Actor.s, line 29: Actor.r would be inlined into itself: Actor.r -> Actor.s -> Actor.r",
        ),
    ],
)
def test_a_call_that_cannot_be_inlined_is_refused(body: str, message: str) -> None:
    handlers = actor(
        """
        @inline
        def h(self, a, b=2):
            c = a + b
            return c

        @inline
        def g(self):
            self.n = 1

        @inline
        def k(self):
            self.n = x

        @inline
        def u(self):
            self.n = nowhere

        @inline
        def r(self):
            self.s()

        @inline
        def s(self):
            self.r()

        @inline
        def t(self):
            self.n = 1; self.h(1)

        @inline
        def d(self, a, b=[]):
            self.n = a
        """,
        prelude="x = 1",
    )
    with pytest.raises(GenerateError, match=f"^{re.escape(message)}$"):
        gen(run(body + "\n"), handlers)


def test_handlers_without_an_actor_class_are_refused() -> None:
    with pytest.raises(GenerateError, match=r"^_toy_handlers defines no class Actor$"):
        gen(run("pass\n"), "def inline(fn):\n    return fn\n")


# --------------------------------------------------------------------------- differential

TOY_HANDLERS = '''\
"""Toy handlers in the shapes of the actor's: admission, success, release."""

from __future__ import annotations

import math
from collections import OrderedDict

LIMIT = 3


def inline(fn):
    return fn


class Full(Exception):
    pass


def _clip(value):
    return min(value, LIMIT)


class Actor:
    def __init__(self):
        self.in_flight = 0
        self.queue = OrderedDict()
        self.total = 0
        self.log = []

    @inline
    def take_slot(self, weight=1):
        """A slot, or Full."""
        if self.in_flight >= LIMIT:
            raise Full(self.in_flight)
        self.in_flight += weight
        return self.in_flight

    @inline
    def record(self, value, *, scale=2):
        # the total grows by the scaled value, clipped
        total = self.total + _clip(value * scale)
        self.total = total
        try:
            self.log.append(math.isqrt(value))
        except ValueError as exc:
            self.log.append(type(exc).__name__)
        return total

    @inline
    def release(self):
        queue = self.queue
        if queue:
            key, _ = queue.popitem(last=False)  # the slot passes to the oldest waiter
            self.log.append(key)
        else:
            self.in_flight -= 1
        self.record(0)
        return self.log.append("released")
'''

TOY_TEMPLATE = '''\
"""Toy template in the shape of the fast path."""

from __future__ import annotations

from typing import Any

from _toy_handlers import Actor


async def attempt(self: Actor, value: int, fn: Any) -> int:
    slots = self.take_slot()  # admission
    try:
        result = await fn(value)
    finally:
        self.release()
    total = self.record(result)
    if value % 2:
        self.record(value, scale=3)
    return slots + total  # type: ignore[no-any-return]
'''
TOY = (TOY_TEMPLATE, TOY_HANDLERS)


def gen_toy() -> str:
    return generate(*TOY, template_module=TEMPLATE, handlers_module=HANDLERS)


def load(name: str, source: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    return module


def finish(coroutine: Coroutine[Any, Any, int]) -> tuple[str, object]:
    """Run a coroutine that never suspends; its result or its exception, as data."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return "returned", stop.value
    except Exception as exc:
        return "raised", (type(exc).__name__, exc.args)
    raise AssertionError("the toy coroutine suspended")


async def work(value: int) -> int:
    if value == 7:
        raise RuntimeError(value)
    return value - 2


@settings(max_examples=60, derandomize=True, deadline=None)
@example(steps=[(7, None), (1, "a"), (-1, "b"), (1, "ab"), (4, None)])  # raised, ValueError, Full
@given(steps=st.lists(st.tuples(st.integers(-3, 9), st.none() | st.text("ab", max_size=2))))
def test_the_generated_code_behaves_like_the_template_calling_the_handlers(
    steps: list[tuple[int, str | None]],
) -> None:
    handlers = load(HANDLERS, TOY_HANDLERS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, HANDLERS, handlers)
        template = load(TEMPLATE, TOY_TEMPLATE)
        generated = load("_toy_generated", gen_toy())
    by_template, by_generated = handlers.Actor(), handlers.Actor()
    for value, waiter in steps:
        for toy in (by_template, by_generated):
            if waiter is not None:
                toy.queue[waiter] = None
        expected = finish(template.attempt(by_template, value, work))
        assert finish(generated.attempt(by_generated, value, work)) == expected
        assert vars(by_generated) == vars(by_template)


# --------------------------------------------------------------------------- the command


def test_main_writes_the_module_and_test_reports_it_stale_once_edited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(_generate, "ROOT", tmp_path)
    (tmp_path / "_toy_template.py").write_text(TOY_TEMPLATE)
    (tmp_path / "_toy_handlers.py").write_text(TOY_HANDLERS)
    output = tmp_path / "_toy_generated.py"
    files = [
        f"--{k}={tmp_path / v}.py" for k, v in [("template", TEMPLATE), ("handlers", HANDLERS)]
    ]
    argv = [*files, f"--output={output}"]
    assert _generate.main([*argv, "--test"]) == 1  # missing
    assert _generate.main(argv) == 0
    assert output.read_text() == format_source(gen_toy(), "_toy_generated.py")
    assert _generate.main([*argv, "--test"]) == 0
    output.write_text(output.read_text() + "# edited by hand\n")
    capsys.readouterr()
    assert _generate.main([*argv, "--test"]) == 1
    assert capsys.readouterr().err == "_toy_generated.py is stale: run `make generate`\n"
    assert _generate.main([*argv[:2], "--output=/elsewhere/x.py"]) == 2


def test_a_returned_local_takes_the_targets_name_unless_the_target_is_an_argument() -> None:
    """`x = self.h(...)` ending `return b`: `b` is written as `x`; with `a = self.h(a)`, the
    argument `a` must stay readable until the end, so the local keeps its prefix."""
    handlers = actor("""
        @inline
        def h(self, a):
            b = a * 2
            b += a
            return b
    """)
    assert gen(run("y = self.h(x)\nx = self.h(x)\n"), handlers) == textwrap.dedent("""\
        async def run(self, x, y):
            # inlined: Actor.h
            y = x * 2
            y += x
            # inlined: Actor.h
            _h_h_b = x * 2
            _h_h_b += x
            x = _h_h_b
    """)


def test_an_expression_handler_is_inlined_wherever_a_value_is_wanted() -> None:
    """A handler whose body is one `return e` becomes `(e)` in a condition, an argument or a
    return: no local stored, so a comparison feeds its jump directly."""
    handlers = actor("""
        @inline
        def free(self, a):
            return self.n < a
    """)
    template = run("if self.free(x):\n    y = 1\nprint(self.free(3))\nreturn not self.free(y)\n")
    assert gen(template, handlers) == textwrap.dedent("""\
        async def run(self, x, y):
            if (self.n < x):
                y = 1
            print((self.n < 3))
            return not (self.n < y)
    """)
