"""The unified model's pipelines: V2C (``v2c``), T2V and T2V+C (``t2v``), the cameras of a
window from its point maps (``pointmap_cameras``) and bundle parts from model outputs
(``assemble``). Pipelines never import the server; the service's task adapters import them."""
