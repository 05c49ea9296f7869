"""Draw the backward graph of the first example, y = (x + w) * (w + 1).

    python examples/seed_graph.py

Writes examples/seed_graph.dot (Graphviz DOT) next to this file and, when the `graphviz` Python
package and the `dot` program are installed, examples/seed_graph.svg.
"""
import os
import shutil

import dualgraph as dg

HERE = os.path.dirname(os.path.abspath(__file__))


def build():
    w = dg.tensor(1.0, requires_grad=True)
    x = dg.tensor(2.0, requires_grad=True)
    y = (x + w) * (w + 1)
    return w, x, y


def main(out_dir=HERE):
    w, x, y = build()
    params = {"w": w, "x": x}
    dot = dg.viz.to_dot(y, name="seed", params=params)
    dot_path = os.path.join(out_dir, "seed_graph.dot")
    with open(dot_path, "w") as f:
        f.write(dot + "\n")
    print(f"wrote {dot_path}")
    try:
        import graphviz  # noqa: F401
    except ImportError:
        graphviz = None
    if graphviz is not None and shutil.which("dot"):
        svg_path = os.path.join(out_dir, "seed_graph.svg")
        dg.viz.render(y, svg_path, format="svg", params=params)
        print(f"wrote {svg_path}")
    else:
        print("graphviz (Python package and `dot` program) not found: render with  dot -Tsvg seed_graph.dot")
    return dot_path


if __name__ == "__main__":
    main()
