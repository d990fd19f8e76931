"""Parallax geometry core (DESIGN section 7), torch on CPU and CUDA.

Modules, one job each:
  rotations   quaternions, axis-angle, rotation angles, Sim(3) matrices
  cameras     c2w <-> w2c, OpenCV <-> OpenGL axes, intrinsics under resize/crop, (un)projection,
              depth <-> point maps
  procrustes  confidence-weighted Umeyama with scale (plain and robust), pose from point maps
  focal       focal length from a point map (least squares, then Weiszfeld)
  pnp         PnP-RANSAC (OpenCV)
  optim       the one optimiser loop: Adam over a loss closure, eager or as a replayed CUDA
              graph, reporting to a backend.runtime.Progress (cancel: runtime.Cancelled)
  alignment   DUSt3R-style global alignment of point maps over any pair/window graph, with
              JOG3R's temporal terms
  photometric camera refinement by direct image alignment on the model's depth
  rays        Plücker ray maps <-> cameras
  geo4d       Geo4D multi-modal alignment terms (disparity, per-window Sim(3), smoothness)
  align4d     Geo4D's multi-modal alignment of overlapping windows (two stages, window filter)
  chunks      long clips: overlapping chunks of windows and the Sim(3) that chains them
  dynamic     the per-pixel dynamic mask: free-space violations across neighbouring frames
  interpose   InterPose pose distance, medoid, D_med, D_total
  metrics     pairwise / trajectory / pair-pose / video-depth metrics

Submodules are imported on use (``from backend.geometry.metrics import ...``) so importing the
package stays cheap. The core reports and stops through ``backend.runtime`` alone: it imports
neither the bundle nor the server (bundle cameras are built in ``backend.pipelines.assemble``).
"""
