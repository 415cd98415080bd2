"""Small synthetic data sets for trying ppdistill without downloading anything.

``ppdistill.demo.det_data.make_det_dataset`` writes an ICDAR2015-style detection set; the CLI is
``python tools/gen_demo_data.py --task det``.
"""
