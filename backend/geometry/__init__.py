"""Parallax geometry core (DESIGN section 7), torch on CPU and CUDA.

Modules, one job each:
  rotations   quaternions, axis-angle, rotation angles, Sim(3) matrices
  cameras     c2w <-> w2c, OpenCV <-> OpenGL axes, intrinsics under resize/crop, (un)projection,
              depth <-> point maps
  procrustes  confidence-weighted Umeyama with scale (plain and robust), pose from point maps
  focal       focal length from a point map (least squares, then Weiszfeld)
  pnp         PnP-RANSAC (OpenCV)
  alignment   DUSt3R-style global alignment of point maps over any pair/window graph, with
              JOG3R's temporal terms
  rays        Plücker ray maps <-> cameras
  geo4d       Geo4D multi-modal alignment terms (disparity, per-window Sim(3), smoothness)
  interpose   InterPose pose distance, medoid, D_med, D_total
  metrics     pairwise / trajectory / pair-pose / video-depth metrics

Submodules are imported on use (``from backend.geometry.metrics import ...``) so importing the
package stays cheap.
"""
