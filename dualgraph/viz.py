"""Graphviz DOT of a backward graph (from a tensor's grad_fn) or of a recorded Tape (`tape.to_dot()`)."""
from .autograd.graph import AccumulateGrad
from .autograd.modes import Tape


def _label_of_tensor(t):
    return f"{tuple(t.shape)} {t.dtype}"


def to_dot(tensor_or_tape, name="backward", params=None):
    """DOT text: one box per backward node (MulBackward0, ...), leaves in blue with their shapes.

    `params` ({"w": w, ...}, like torchviz's make_dot) names the leaves in the picture.
    """
    lines = [f"digraph {name} {{", '  rankdir="BT";', '  node [fontname="Helvetica", fontsize=10];']
    ids = {}
    leaf_names = {id(t): n for n, t in (params or {}).items()}

    def node_id(obj):
        key = id(obj.variable) if isinstance(obj, AccumulateGrad) else id(obj)
        if key not in ids:
            ids[key] = f"n{len(ids)}"
            if isinstance(obj, AccumulateGrad):
                v = obj.variable
                title = str(leaf_names.get(id(v), "leaf")).replace("\\", "\\\\").replace('"', '\\"')
                lines.append(f'  {ids[key]} [label="{title}\\n{_label_of_tensor(v)}", shape=box, style=filled, '
                             f'fillcolor="lightblue"];')
            else:
                lines.append(f'  {ids[key]} [label="{obj.name()}", shape=box];')
        return ids[key]

    if isinstance(tensor_or_tape, Tape):
        roots = list(tensor_or_tape.nodes)
    else:
        t = tensor_or_tape
        out = f"out{len(ids)}"
        lines.append(f'  {out} [label="output\\n{_label_of_tensor(t)}", shape=ellipse, style=filled, '
                     f'fillcolor="darkolivegreen1"];')
        if t.grad_fn is None:
            lines.append("}")
            return "\n".join(lines)
        lines.append(f"  {node_id(t.grad_fn)} -> {out};")
        roots = [t.grad_fn]
    seen = set()
    stack = list(roots)
    while stack:
        fn = stack.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        me = node_id(fn)
        for child, _ in fn.next_functions:
            if child is None:
                continue
            lines.append(f"  {node_id(child)} -> {me};")
            if not isinstance(child, AccumulateGrad):
                stack.append(child)
    lines.append("}")
    return "\n".join(lines)


# drawing is this module's: the Tape, below it, gets its method here (as Tensor gets its ops in _methods)
Tape.to_dot = to_dot


def render(tensor_or_tape, path, format="svg", params=None):
    """Write the picture with the `graphviz` package (pip install graphviz, plus the dot binary)."""
    import graphviz
    src = graphviz.Source(to_dot(tensor_or_tape, params=params))
    return src.render(outfile=path, format=format, cleanup=True)
