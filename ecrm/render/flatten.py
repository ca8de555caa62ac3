"""Layout inheritance resolved at compile time, for the simple shape email templates have.

`{% extends "_layouts/email.html" %}` costs more per render than the rest of the HTML part:
Jinja looks the layout up, registers every block in the context, then runs each block as its
own generator. Most email bodies only fill the layout's blocks with text and expressions, so
`flatten` builds one syntax tree, the layout's with each `{% block %}` replaced by the child's
override (or the layout's default), and compiles it once per template and locale.

It only flattens what renders the same both ways, and returns None otherwise:

- the child is `{% extends "<literal>" %}` first, then only blocks (and whitespace);
- the layout does not extend anything itself, and neither side nests blocks;
- nothing binds or scopes names (`set`, `for`, `with`, macros, imports, includes) or reaches
  the block machinery (`self`, `super()`), so a block body sees the same names inlined;
- both files get the same autoescaping, since the flat tree is compiled under the child's name.

The flat template reports errors at its own lines, which match neither file, so a caller that
hits an error renders the template as written to report it (see `render_part`).

Values the caller always renders with (the locale's `lang` and `dir`) can be folded in too, and
adjacent outputs are merged: the layout's head then renders as one piece of text.
"""

from __future__ import annotations

from collections.abc import Mapping

from jinja2 import Environment, Template, TemplateError, TemplateNotFound, nodes
from jinja2.nodes import EvalContext
from jinja2.visitor import NodeTransformer

# Nodes that neither bind names nor change scoping or escaping: inlining them changes nothing.
_PLAIN_NODES = (
    nodes.Output, nodes.TemplateData, nodes.If, nodes.Const, nodes.Name, nodes.Getattr,
    nodes.Getitem, nodes.Slice, nodes.Filter, nodes.Test, nodes.CondExpr, nodes.BinExpr, nodes.UnaryExpr,
    nodes.Compare, nodes.Operand, nodes.Concat, nodes.List, nodes.Tuple, nodes.Dict, nodes.Pair,
    nodes.Keyword, nodes.Call,
)
# Names with a meaning of their own inside blocks, loops and macros.
_SPECIAL_NAMES = frozenset({"self", "super", "loop", "caller", "varargs", "kwargs"})


def flatten(env: Environment, name: str, constants: Mapping[str, str] | None = None) -> Template | None:
    """`name` with its layout inlined, or None when it has no layout or is not simple enough.

    Each name in `constants` is replaced by its value, for a caller that always renders with
    those values (a composer, with the locale's `lang` and `dir`): Jinja then folds them, and
    expressions of them only, into the text around them at compile time.

    Any Jinja error (missing layout, syntax, unknown filter) also gives None: flattening is only
    a shortcut, and rendering the template as written reports such errors as usual."""
    try:
        child, filename = _parse(env, name)
        layout_name = _layout_of(child)
        if layout_name is None:
            return None
        layout_name = env.join_path(layout_name, name)
        layout, _ = _parse(env, layout_name)
        if not _same_escaping(env, name, layout_name) or not _is_plain(layout, allow_blocks=True):
            return None
        overrides = {block.name: block for block in child.body if isinstance(block, nodes.Block)}
        if not all(_is_plain(block, allow_blocks=False) and not block.required for block in overrides.values()):
            return None
        layout.body = _merge_outputs(_inline(layout.body, overrides))
        layout = _Substitute(constants or {}).visit(layout)
        code = env.compile(layout.set_environment(env), name, filename)
    except TemplateError:
        return None
    return env.template_class.from_code(env, code, env.make_globals(None))


def _parse(env: Environment, name: str) -> tuple[nodes.Template, str | None]:
    if env.loader is None:
        raise TemplateNotFound(name)
    source, filename, _ = env.loader.get_source(env, name)
    return env.parse(source, name, filename), filename


def _layout_of(child: nodes.Template) -> str | None:
    """The layout a child names when it is `extends` + blocks only, else None."""
    if not child.body or not isinstance(child.body[0], nodes.Extends):
        return None
    target = child.body[0].template
    if not isinstance(target, nodes.Const) or not isinstance(target.value, str):
        return None
    for node in child.body[1:]:
        if isinstance(node, nodes.Output) and all(_is_blank(n) for n in node.nodes):
            continue  # whitespace between blocks, which Jinja drops after an `extends`
        if not isinstance(node, nodes.Block):
            return None
    return target.value


def _is_blank(node: nodes.Node) -> bool:
    return isinstance(node, nodes.TemplateData) and not node.data.strip()


def _is_plain(block: nodes.Node, allow_blocks: bool) -> bool:
    """True when `block`'s body has only plain nodes (and top-level, unnested blocks if allowed)."""
    for node in _children(block):
        if isinstance(node, nodes.Block):
            if not allow_blocks or node.required or not all(_is_plain_node(n) for n in _descendants(node)):
                return False
        elif not _is_plain_node(node):
            return False
    return True


def _children(node: nodes.Node) -> list[nodes.Node]:
    """Every descendant, except that a block's own body is not entered (checked by the caller)."""
    found: list[nodes.Node] = []
    for child in node.iter_child_nodes():
        found.append(child)
        if not isinstance(child, nodes.Block):
            found.extend(_children(child))
    return found


def _descendants(node: nodes.Node) -> list[nodes.Node]:
    return [n for child in node.iter_child_nodes() for n in (child, *_descendants(child))]


def _is_plain_node(node: nodes.Node) -> bool:
    if isinstance(node, nodes.Name):
        return node.ctx == "load" and node.name not in _SPECIAL_NAMES
    return isinstance(node, _PLAIN_NODES)


def _inline(body: list[nodes.Node], overrides: dict[str, nodes.Block]) -> list[nodes.Node]:
    """`body` with each block replaced by the child's override of it, or by its own default."""
    result: list[nodes.Node] = []
    for node in body:
        if isinstance(node, nodes.Block):
            result.extend(overrides.get(node.name, node).body)
            continue
        if isinstance(node, nodes.If):
            _inline_if(node, overrides)
        result.append(node)
    return result


def _inline_if(node: nodes.If, overrides: dict[str, nodes.Block]) -> None:
    """`if` is the only plain node with bodies, which may hold blocks; its `elif`s are `If`s."""
    node.body = _inline(node.body, overrides)
    node.else_ = _inline(node.else_, overrides)
    for branch in node.elif_:
        _inline_if(branch, overrides)


def _merge_outputs(body: list[nodes.Node]) -> list[nodes.Node]:
    """`body` with each run of adjacent outputs made one, so the text they start and end with
    joins up (inlined blocks otherwise each add an output of their own)."""
    merged: list[nodes.Node] = []
    for node in body:
        if isinstance(node, nodes.Output) and merged and isinstance(merged[-1], nodes.Output):
            merged[-1] = nodes.Output(merged[-1].nodes + node.nodes, lineno=merged[-1].lineno)
        else:
            merged.append(node)
    return merged


class _Substitute(NodeTransformer):
    """Replaces each read of a name in `constants` by its value (nothing here assigns names)."""

    def __init__(self, constants: Mapping[str, str]) -> None:
        self.constants = constants

    def visit_Name(self, node: nodes.Name) -> nodes.Node:
        if node.ctx == "load" and node.name in self.constants:
            return nodes.Const(self.constants[node.name], lineno=node.lineno)
        return node


def _same_escaping(env: Environment, name: str, layout_name: str) -> bool:
    """The flat tree is compiled under the child's name, so both names must autoescape alike."""
    return bool(EvalContext(env, name).autoescape) == bool(EvalContext(env, layout_name).autoescape)
