"""Dead code elimination: drop nodes whose outputs nothing needs (impure nodes stay)."""


def dce(graph):
    needed = {id(v) for v in graph.outputs}
    keep = []
    for node in reversed(graph.nodes):
        if not node.op.pure or any(id(o) in needed for o in node.outputs):
            keep.append(node)
            needed.update(id(v) for v in node.inputs if v is not None)
    keep.reverse()
    graph.nodes = keep
    return graph
