"""The batch-order study (docs/fidelity/batch_order.md): E4 widths 38 and 48 at 6 and 10 levels and E1 extension
level 9, lth_jax with each seed on its own epoch order (32 seeds, lth_jax/<point>) and on 8 shared orders × the same
16 seeds (lth_jax_shared/order_<K>/<point>), against the recorded thesis-code runs (16 seeds a point, one order).
Resumable; the runs of one MLP shape train as one pack. Writes fidelity.md and batch_order.md."""

from lth_jax.fidelity import RECORDED_THESIS_CODE, default_config


def get_config():
    c = default_config()
    c.points = ("w38_L06", "w38_L10", "w48_L06", "w48_L10", "ext9")
    c.seeds = 32
    c.shared_orders = 8
    c.shared_seeds = 16
    c.thesis_results = (str(RECORDED_THESIS_CODE),)
    c.structure_point = "ext9"
    return c
