"""A function node of the pipeline graph counts its own step: the values its calls made and
the failures of its runs, an address once. It had added up its output variables' counts, so a
step that shares an output variable with another (two uses of one function, an `EachOf`'s
alternatives, two functions saving one variable) showed the other's failures, and a step with
two outputs counted each failed combination twice. A step whose every output value was
deleted is drawn with its inputs (its runs name them)."""

from __future__ import annotations

from scistack import BaseVariable, EachOf, Fixed, Merge, for_each, lineage_fcn
from scistack.report.status import status_summary
from scistack.ui import api


class GsX(BaseVariable):
    pass


class GsY(BaseVariable):
    pass


class GsA(BaseVariable):
    pass


class GsB(BaseVariable):
    pass


class GsOut(BaseVariable):
    pass


@lineage_fcn
def gs_tens(x):
    if x == 2:
        raise ValueError("two is refused")
    return x * 10


@lineage_fcn
def gs_pair(x):
    if x == 2:
        raise ValueError("two is refused")
    return x * 10, x * 100


@lineage_fcn
def gs_plus(x):
    return x + 1


@lineage_fcn
def gs_sum(x, y):
    return float(x["GsX"].sum() + y)


ZERO = {"done": 0, "stale": 0, "unknown": 0, "failed": 0, "missing": 0}
ONE = dict(subject=[1, 2, 3], session=["pre"], progress=False, verbose=False)


def _save_inputs() -> None:
    for s in (1, 2, 3):
        GsX.save(s, subject=s, session="pre")
        GsY.save(s + 10, subject=s, session="pre")


def _nodes(db) -> dict[str, dict]:
    return {n["id"]: n for n in api.graph(db)["nodes"]}


def test_a_step_with_two_outputs_counts_a_failed_combination_once(project):
    _save_inputs()
    for_each(gs_pair, inputs={"x": GsX}, outputs=[GsA, GsB], **ONE)
    node = _nodes(project)["fn:gs_pair"]
    assert node["counts"] == {**ZERO, "done": 2, "failed": 1}  # (had been done 4, failed 2)
    assert node["state"] == "failed"


def test_two_steps_sharing_an_output_each_count_their_own(project):
    """gs_tens(GsX) fails at subject 2; gs_tens(GsY) makes GsOut at subject 4 only, and
    gs_plus(GsY) at subject 5: neither of the last two shows gs_tens(GsX)'s failure."""
    _save_inputs()
    GsY.save(14, subject=4, session="pre")
    GsY.save(15, subject=5, session="pre")
    for_each(gs_tens, inputs={"x": GsX}, outputs=[GsOut], **ONE)
    for_each(gs_tens, inputs={"x": GsY}, outputs=[GsOut], subject=[4], session=["pre"], progress=False,
             verbose=False)
    for_each(gs_plus, inputs={"x": GsY}, outputs=[GsOut], subject=[5], session=["pre"], progress=False,
             verbose=False)
    nodes = _nodes(project)
    assert nodes["fn:gs_tens(GsX)"]["counts"] == {**ZERO, "done": 2, "failed": 1}
    assert (nodes["fn:gs_tens(GsY)"]["counts"], nodes["fn:gs_tens(GsY)"]["state"]) == ({**ZERO, "done": 1}, "current")
    assert (nodes["fn:gs_plus"]["counts"], nodes["fn:gs_plus"]["state"]) == ({**ZERO, "done": 1}, "current")
    # the variable's node is what `scistack status` counts
    assert nodes["var:GsOut"]["counts"] == status_summary(project, ["GsOut"]).counts["GsOut"] \
        == {**ZERO, "done": 4, "failed": 1}


def test_each_of_alternatives_count_their_own_and_agree_with_the_grid(project):
    """EachOf(GsY, GsX): GsX's alternative fails at subject 2, GsY's succeeds there. The grid
    has one cell there, failed, naming x='GsX'; the graph's variable node counts as the grid
    does, the failure is GsX's alternative's, and GsY's is current."""
    _save_inputs()
    for_each(gs_tens, inputs={"x": EachOf(GsY, GsX)}, outputs=[GsOut], **ONE)
    nodes = _nodes(project)
    grid = api.grid(project, "var:GsOut")
    assert nodes["var:GsOut"]["counts"] == grid["counts"]["GsOut"] == {**ZERO, "done": 2, "failed": 1}
    failed = [row[0] for row in grid["rows"] if row[0]["status"] == "failed"]
    assert [(c["addr"]["subject"], c["reason"].split(":")[0]) for c in failed] == [(2, "x='GsX'")]
    assert nodes["fn:gs_tens(GsX)"]["counts"] == {**ZERO, "done": 2, "failed": 1}
    assert (nodes["fn:gs_tens(GsY)"]["counts"], nodes["fn:gs_tens(GsY)"]["state"]) == ({**ZERO, "done": 3}, "current")
    # each alternative's run names its own input
    assert sorted(r.extra["inputs"] for r in project.index.runs()) == [["GsX"], ["GsY"]]


def test_a_step_whose_outputs_were_all_deleted_keeps_its_input_edge(project):
    _save_inputs()
    for_each(gs_plus, inputs={"x": GsX}, outputs=[GsA], **ONE)
    for s in (1, 2, 3):
        GsA.delete(subject=s, session="pre")
    g = api.graph(project)
    assert sorted(map(tuple, g["edges"])) == [("fn:gs_plus", "var:GsA"), ("var:GsX", "fn:gs_plus")]
    assert "every one deleted" in _nodes(project)["fn:gs_plus"]["note"]


def test_a_run_names_the_variables_it_read(project):
    """Fixed and Merge members name their variables; a constant names none."""
    _save_inputs()
    for_each(gs_sum, inputs={"x": Merge(GsX, Fixed(GsY, subject=1)), "y": 5}, outputs=[GsB], **ONE)
    assert project.index.runs()[-1].extra["inputs"] == ["GsX", "GsY"]
    # the same step as its call records name: one node, not one from the calls and one from the run
    assert [n for n in _nodes(project) if n.startswith("fn:")] == ["fn:gs_sum"]
    assert ("var:GsY", "fn:gs_sum") in map(tuple, api.graph(project)["edges"])


def test_a_step_whose_inputs_were_switched_is_drawn_once(project):
    """gs_plus read GsX, then the step was switched to GsY and remade every GsOut: the graph
    draws the one step that makes GsOut now (as before runs named their inputs), not the
    GsX step beside it as "missing" for ever."""
    _save_inputs()
    for_each(gs_plus, inputs={"x": GsX}, outputs=[GsOut], **ONE)
    for_each(gs_plus, inputs={"x": GsY}, outputs=[GsOut], **ONE)
    graph = api.graph(project)
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert [n for n in nodes if n.startswith("fn:")] == ["fn:gs_plus"]
    assert (nodes["fn:gs_plus"]["counts"], nodes["fn:gs_plus"]["state"]) == ({**ZERO, "done": 3}, "current")
    assert sorted(map(tuple, graph["edges"])) == [("fn:gs_plus", "var:GsOut"), ("var:GsY", "fn:gs_plus")]


def _grid_agrees_with_node(db, node_id: str) -> dict:
    """The grid of a function node, checked against its node: each row's worst cell counted
    (an address once, as the node counts it) gives the node's counts, and with one output the
    grid's own counts are the node's."""
    node = _nodes(db)[node_id]
    grid = api.grid(db, node_id)
    assert grid["variables"] == list(node["outputs"])
    order = ("done", "stale", "unknown", "failed", "missing")
    per_row = dict.fromkeys(order, 0)
    for row in grid["rows"]:
        per_row[max((c["status"] for c in row if c), key=order.index)] += 1
    assert per_row == node["counts"], (node_id, grid["rows"])
    if len(grid["variables"]) == 1:
        assert grid["counts"][grid["variables"][0]] == node["counts"]
    return grid


def test_a_function_nodes_grid_shows_its_own_steps_cells(project):
    """gs_tens(GsX) fails at subject 2 and makes GsOut at 1 and 3; gs_tens(GsY) makes it at
    4, gs_plus(GsY) at 5. Each step's grid shows its own cells only (it had shown all five
    addresses, gs_tens(GsX)'s failure among them, whatever the step), as its node counts."""
    _save_inputs()
    GsY.save(14, subject=4, session="pre")
    GsY.save(15, subject=5, session="pre")
    for_each(gs_tens, inputs={"x": GsX}, outputs=[GsOut], **ONE)
    for_each(gs_tens, inputs={"x": GsY}, outputs=[GsOut], subject=[4], session=["pre"], progress=False,
             verbose=False)
    for_each(gs_plus, inputs={"x": GsY}, outputs=[GsOut], subject=[5], session=["pre"], progress=False,
             verbose=False)
    mine = _grid_agrees_with_node(project, "fn:gs_tens(GsY)")
    assert (mine["addresses"], [r[0]["status"] for r in mine["rows"]]) == ([{"subject": 4, "session": "pre"}],
                                                                          ["done"])
    plus = _grid_agrees_with_node(project, "fn:gs_plus")
    assert [a["subject"] for a in plus["addresses"]] == [5]
    tens = _grid_agrees_with_node(project, "fn:gs_tens(GsX)")
    assert [(a["subject"], r[0]["status"]) for a, r in zip(tens["addresses"], tens["rows"])] == [
        (1, "done"), (2, "failed"), (3, "done")]
    assert tens["rows"][1][0]["run"] and "two is refused" in tens["rows"][1][0]["reason"]
    # filtered and paged as any grid; the variable's grid still has every step's cells
    assert api.grid(project, "fn:gs_tens(GsX)", statuses=["failed"])["addresses"] == [{"subject": 2, "session": "pre"}]
    assert api.grid(project, "var:GsOut")["counts"]["GsOut"] == {**ZERO, "done": 4, "failed": 1}


def test_each_of_alternatives_grids_are_their_own(project):
    """EachOf(GsY, GsX): GsX's alternative fails at subject 2; GsY's grid is its three values."""
    _save_inputs()
    for_each(gs_tens, inputs={"x": EachOf(GsY, GsX)}, outputs=[GsOut], **ONE)
    assert _grid_agrees_with_node(project, "fn:gs_tens(GsY)")["counts"]["GsOut"] == {**ZERO, "done": 3}
    assert _grid_agrees_with_node(project, "fn:gs_tens(GsX)")["counts"]["GsOut"] == {**ZERO, "done": 2, "failed": 1}


def test_a_step_with_two_outputs_one_shared_shows_its_own_rows(project):
    """gs_pair(GsX) makes GsA and GsB (failing at subject 2); gs_plus(GsY) makes GsA at subject
    4 too. gs_pair's grid has its three rows, not gs_plus's; gs_plus's has subject 4 alone."""
    _save_inputs()
    GsY.save(14, subject=4, session="pre")
    for_each(gs_pair, inputs={"x": GsX}, outputs=[GsA, GsB], **ONE)
    for_each(gs_plus, inputs={"x": GsY}, outputs=[GsA], subject=[4], session=["pre"], progress=False,
             verbose=False)
    pair = _grid_agrees_with_node(project, "fn:gs_pair")
    assert [a["subject"] for a in pair["addresses"]] == [1, 2, 3]
    assert _nodes(project)["fn:gs_pair"]["counts"] == {**ZERO, "done": 2, "failed": 1}
    plus = _grid_agrees_with_node(project, "fn:gs_plus")
    assert [a["subject"] for a in plus["addresses"]] == [4]
