"""The model zoo: parameter counts of the papers' models, shapes, mixed precision, data parallelism."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import run_python

from lth_jax import masks
from lth_jax.models import get_model, model_names
from lth_jax.train import init_variables


def param_shapes(name, num_classes, input_shape, **kwargs):
    model = get_model(name, num_classes, **kwargs)
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1,) + input_shape), train=False))  # shapes only
    return variables["params"], variables.get("batch_stats", {})


def conv_kernel_count(params):
    return sum(int(np.prod(x.shape)) for path, x in jax.tree_util.tree_flatten_with_path(params)[0] if path[-1].key == "kernel" and len(x.shape) == 4)


def total(params):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


def test_parameter_counts_of_the_papers_models():
    vgg19, _ = param_shapes("cifar_vgg_19", 10, (32, 32, 3))
    assert conv_kernel_count(vgg19) == 20_018_880  # "about 20.0M conv weights"
    resnet50, stats = param_shapes("resnet_50", 1000, (224, 224, 3))
    assert total(resnet50) == 25_557_032  # torchvision's ResNet-50
    assert stats  # BatchNorm statistics live apart from the params
    resnet20, _ = param_shapes("cifar_resnet_20", 10, (32, 32, 3))
    assert 0.26e6 < total(resnet20) < 0.28e6
    resnet18, _ = param_shapes("resnet_18", 1000, (224, 224, 3))
    assert total(resnet18) == 11_689_512
    lenet, _ = param_shapes("lenet_300_100", 10, (28, 28, 1))
    assert total(lenet) == 266_610
    assert masks.count_prunable(lenet) == 784 * 300 + 300 * 100 + 100 * 10


@pytest.mark.parametrize(
    "name,kwargs,shape",
    [
        ("cifar_vgg_11", {"width_multiplier": 1 / 16}, (16, 16, 3)),
        ("cifar_vgg_16", {"width_multiplier": 1 / 16}, (16, 16, 3)),
        ("cifar_resnet_20", {"width_multiplier": 0.25}, (16, 16, 3)),
        ("resnet_18", {"width_multiplier": 1 / 16, "stem": "cifar"}, (16, 16, 3)),
        ("resnet_50", {"width_multiplier": 1 / 16}, (32, 32, 3)),
        ("lenet_300_100", {}, (28, 28, 1)),
        ("conv_2", {"width_multiplier": 0.25}, (16, 16, 3)),
        ("conv_6", {"width_multiplier": 0.25}, (16, 16, 3)),
    ],
)
def test_models_run_in_both_modes(name, kwargs, shape):
    model = get_model(name, 7, **kwargs)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2,) + shape), jnp.float32)
    params, batch_stats = init_variables(model, jax.random.PRNGKey(1), x)
    variables = {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}
    logits = model.apply(variables, x, train=False)
    assert logits.shape == (2, 7) and logits.dtype == jnp.float32
    mutable = ["batch_stats"] if "batch_stats" in variables else False
    out = model.apply(variables, x, train=True, mutable=mutable)
    assert (out[0] if mutable else out).shape == (2, 7)
    # the default prunable rule takes every conv/dense kernel and no BatchNorm parameter
    prunable = masks.prunable_paths(variables["params"])
    assert prunable and all(p.endswith("kernel") for p in prunable)
    assert not any("bn" in p for p in prunable)


@pytest.mark.parametrize("name,kwargs,shape", [("cifar_vgg_11", {"width_multiplier": 1 / 16}, (16, 16, 3)), ("conv_2", {"width_multiplier": 0.25}, (16, 16, 3))])
def test_mixed_precision_keeps_float32_parameters_and_logits(name, kwargs, shape):
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2,) + shape), jnp.float32)
    full = get_model(name, 7, **kwargs)
    half = get_model(name, 7, dtype=jnp.bfloat16, **kwargs)
    params, batch_stats = init_variables(full, jax.random.PRNGKey(1), x)
    variables = {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}
    assert jax.tree.structure(init_variables(half, jax.random.PRNGKey(1), x)[0]) == jax.tree.structure(params)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables["params"]))
    half_logits = half.apply(variables, x, train=False)  # the same float32 parameters, bf16 compute
    assert half_logits.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(half_logits), np.asarray(full.apply(variables, x, train=False)), rtol=0.1, atol=0.1)


def test_unknown_models_and_bad_depths():
    with pytest.raises(ValueError, match="unknown model 'vgg_19'; known models: .*cifar_vgg_19"):
        get_model("vgg_19", 10)
    with pytest.raises(ValueError, match="CIFAR ResNet depth 21 is not 6n \\+ 2"):
        get_model("cifar_resnet_21", 10)
    assert "cifar_resnet_20" in model_names() and "conv_6" in model_names()
    assert get_model("cifar_resnet_32", 10).stages == (5, 5, 5)


def test_vgg_with_batchnorm_on_eight_devices_matches_one():
    out = json.loads(run_python("""
        import json, jax, numpy as np
        from lth_jax import masks, objectives, parallel
        from lth_jax.data.augment import image_preprocess
        from lth_jax.models import get_model
        from lth_jax.optim import OptimizerRecipe, make_optimizer
        from lth_jax.train import create_train_state, init_variables, make_train_step
        model = get_model("cifar_vgg_11", 10, width_multiplier=1 / 16)
        rng = np.random.default_rng(0)
        batch = {"x": rng.integers(0, 256, (32, 16, 16, 3), dtype=np.uint8), "y": rng.integers(0, 10, 32).astype(np.int32)}
        params, stats = init_variables(model, jax.random.PRNGKey(0), batch["x"][:1])
        mask = masks.global_magnitude_prune(params, masks.init_mask(params), fraction=0.5)
        tx = make_optimizer(OptimizerRecipe(name="sgd", learning_rate=0.1, weight_decay=1e-4), 1, 10)
        prep = image_preprocess((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), flip=True)
        out = {}
        for name, mesh in (("one", parallel.data_mesh(jax.devices()[:1])), ("eight", parallel.data_mesh())):
            step = make_train_step(model, tx, objectives.softmax_classification(), mesh=mesh, preprocess=prep)
            state, _ = step(create_train_state(params, tx, mask=mask, batch_stats=stats), parallel.put_batch(batch, mesh))
            out[name] = jax.device_get((state.params, state.batch_stats))
        diff = lambda a, b: max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
        print(json.dumps({"params": diff(out["one"][0], out["eight"][0]), "stats": diff(out["one"][1], out["eight"][1]),
                          "moved": diff(out["one"][1], stats), "devices": len(jax.devices())}))
    """, devices=8).stdout.strip().splitlines()[-1])
    assert out["devices"] == 8 and out["moved"] > 1e-4
    assert out["params"] < 1e-5 and out["stats"] < 1e-5


@pytest.mark.parametrize("kernel,strides,size", [(3, 1, 8), (3, 2, 8), (1, 2, 7), (7, 2, 9), (3, 1, 5)])
def test_sliced_conv_has_nn_conv_parameters_and_results(kernel, strides, size):
    from lth_jax.models.layers import conv

    x = jax.random.normal(jax.random.PRNGKey(1), (3, size, size + 1, 4))
    fast, slow = conv(6, kernel, strides=strides, use_bias=True, impl="slices"), conv(6, kernel, strides=strides, use_bias=True)
    variables = slow.init(jax.random.PRNGKey(0), x)
    assert jax.tree.map(np.shape, fast.init(jax.random.PRNGKey(0), x)) == jax.tree.map(np.shape, variables)
    np.testing.assert_array_equal(fast.init(jax.random.PRNGKey(0), x)["params"]["kernel"], variables["params"]["kernel"])
    variables = jax.tree.map(lambda a: a + 0.1, variables)  # a nonzero bias
    np.testing.assert_allclose(fast.apply(variables, x), slow.apply(variables, x), rtol=1e-5, atol=1e-5)

    def loss(module, params):
        return jnp.sum(jnp.sin(module.apply(params, x)))

    grads = [jax.grad(lambda p, m=m: loss(m, p))(variables) for m in (fast, slow)]
    for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name,kwargs", [("vgg_6", {"width_multiplier": 0.125}), ("cifar_resnet_8", {"width_multiplier": 0.5}),
                                         ("conv_2", {"width_multiplier": 0.125})])
def test_models_with_sliced_convs_compute_what_xla_convs_do(name, kwargs):
    x = jax.random.normal(jax.random.PRNGKey(2), (4, 8, 8, 1))
    fast, slow = get_model(name, 10, conv_impl="slices", **kwargs), get_model(name, 10, **kwargs)
    variables = slow.init(jax.random.PRNGKey(0), x, train=False)
    assert jax.tree.map(np.shape, fast.init(jax.random.PRNGKey(0), x, train=False)) == jax.tree.map(np.shape, variables)
    np.testing.assert_allclose(fast.apply(variables, x, train=False), slow.apply(variables, x, train=False), rtol=1e-4, atol=1e-5)
    with pytest.raises(Exception, match="conv_impl='fft' is not one of xla, slices"):
        get_model(name, 10, conv_impl="fft", **kwargs).init(jax.random.PRNGKey(0), x, train=False)
