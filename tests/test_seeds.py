"""Every number the seed tutorials print that `gradcli grad` covers (../shared/seed-cases.md).

The expected values are the seeds' own printed numbers, exactly as PyTorch gave them
(float16 results included: -0.6665 is float16's -2/3).
"""

import pytest

from gradcli.render import number


def grad_of(doc, name):
    return doc["gradient"][name]["data"]


def test_seed_1_quadratic(run_json):
    code, doc = run_json("grad", "3 + 2*x + x**2", "x=2")
    assert code == 0
    assert doc["f"]["data"] == 11.0
    assert grad_of(doc, "x") == 6.0
    assert doc["check"]["status"] == "ok"


def test_seed_2_two_scalars_float16(run_json):
    code, doc = run_json("grad", "x0**2 + x1**3 + x0*x1", "x0=2", "x1=3", "--dtype", "float16")
    assert code == 0
    assert doc["f"] == {"data": 37.0, "shape": [], "dtype": "float16"}
    assert grad_of(doc, "x0") == 7.0
    assert grad_of(doc, "x1") == 29.0


def test_seed_3_vector_indexing_float16(run_json):
    code, doc = run_json("grad", "x[0]**2 + x[1]**3 + x[0]*x[1]", "x=[2,3]", "--dtype", "float16")
    assert code == 0
    assert doc["f"]["data"] == 37.0
    assert doc["gradient"]["x"] == {"data": [7.0, 29.0], "shape": [2], "dtype": "float16"}
    assert doc["symbolic"]["x"]["value"]["data"] == [7.0, 29.0]


def test_seed_5_sum_square_loss(run_json):
    code, doc = run_json("grad", "sum((t - p)**2)", "p=[1,2,3]", "t=[2,3,4]", "--wrt", "p", "--dtype", "float16")
    assert code == 0
    assert doc["f"]["data"] == 3.0
    assert grad_of(doc, "p") == [-2.0, -2.0, -2.0]
    assert "t" not in doc["gradient"]  # targets are constants


def test_seed_6_mean_square_loss_float16(run_json):
    code, doc = run_json("grad", "mean((t - p)**2)", "p=[1,2,3]", "t=[2,3,4]", "--wrt", "p", "--dtype", "float16")
    assert code == 0
    assert doc["f"]["data"] == 1.0
    g = grad_of(doc, "p")
    assert [number(v, "float16") for v in g] == ["-0.6665"] * 3
    assert g == [-0.66650390625] * 3  # float16's nearest value to -2/3, exactly
    assert doc["check"]["variables"]["p"]["status"] == "agree"  # right for float16, not a failure


def test_seed_7_combined_loss_float16(run_json):
    code, doc = run_json("grad", "0.65*mean((t-p)**2) + 0.35*mean(abs(p-t))", "p=[1,2,3]", "t=[2,3,7]",
                         "--wrt", "p", "--dtype", "float16")
    assert code == 0
    assert doc["f"]["data"] == 4.6015625
    g = grad_of(doc, "p")
    assert [number(v, "float16") for v in g] == ["-0.5498", "-0.5498", "-1.8496"]
    assert doc["symbolic"]["p"]["value"]["data"] == pytest.approx([-0.55, -0.55, -1.85])


def test_seed_11_two_variable_product(run_json):
    code, doc = run_json("grad", "(x + w)*(w + 1)", "w=1", "x=2")
    assert code == 0
    assert grad_of(doc, "w") == 5.0
    assert grad_of(doc, "x") == 2.0
    assert doc["wrt"] == ["w", "x"]  # the order the values were given


def test_seed_16_grad_of_2x2_plus_5(run_json):
    code, doc = run_json("grad", "2*x**2 + 5", "x=5")
    assert code == 0
    assert grad_of(doc, "x") == 20.0
    assert doc["symbolic"]["x"]["formula"] == "4*x"


def test_seed_16_plain_prints_just_the_number(run):
    result = run("grad", "2*x**2 + 5", "x=5", "--plain")
    assert result.exit_code == 0
    assert result.stdout == "20\n"


def test_seed_18_matrix_output_is_summed_and_says_so(run_json, run):
    code, doc = run_json("grad", "2*x**3 + 5*x**2 + 7*x + 10", "x=[[1,2,3],[4,5,6]]")
    assert code == 0
    assert doc["f"]["data"] == [[24.0, 60.0, 130.0], [246.0, 420.0, 664.0]]
    assert doc["reduction"] == "sum"
    assert grad_of(doc, "x") == [[23.0, 51.0, 91.0], [143.0, 207.0, 283.0]]
    assert any("sum was differentiated" in w for w in doc["warnings"])
    table = run("grad", "2*x**3 + 5*x**2 + 7*x + 10", "x=[[1,2,3],[4,5,6]]")
    assert "sum" in table.stdout and "differentiated" in table.stdout


def test_seed_19_two_matrices(run_json):
    code, doc = run_json("grad", "2*x**2 + 5*y**2", "x=[[1,2,3],[4,5,6]]", "y=[[5,6,7],[8,9,10]]")
    assert code == 0
    assert grad_of(doc, "x") == [[4.0, 8.0, 12.0], [16.0, 20.0, 24.0]]
    assert grad_of(doc, "y") == [[50.0, 60.0, 70.0], [80.0, 90.0, 100.0]]


def test_seed_23_sum_over_ones(run_json):
    code, doc = run_json("grad", "sum(5*(x + 1)**2)/2", "x=ones(2)")
    assert code == 0
    assert doc["f"]["data"] == 20.0
    assert grad_of(doc, "x") == [10.0, 10.0]


@pytest.mark.parametrize("method", ["grad", "backward", "jacobian", "all"])
def test_every_method_gives_the_seed_numbers_without_accumulating(run_json, method):
    code, doc = run_json("grad", "(x + w)*(w + 1)", "w=1", "x=2", "--method", method)
    assert code == 0
    assert grad_of(doc, "w") == 5.0 and grad_of(doc, "x") == 2.0
    if method == "all":
        assert set(doc["methods"]) == {"grad", "backward", "jacobian"}
        for m in doc["methods"].values():
            assert m["agrees"] is True
            assert m["gradient"]["w"]["data"] == 5.0  # not 10 or 15: no accumulation
