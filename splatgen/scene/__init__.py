"""The scene being optimised: Gaussians, the cameras that view them, how they start and how they grow.

gaussians.py   raw parameters (what the optimiser and a PLY hold) and `activate` (the one place
               that maps them to what a rasterizer takes); world frame +y up, front +z
cameras.py     orbit camera sampling, intrinsics, OpenCV world-to-camera matrices, eval orbits
init.py        initialisations (random ball, PLY, Shap-E) behind the `Init` union
shap_e.py      Shap-E mesh -> surface Gaussians
densify.py     densify / prune (gsplat's DefaultStrategy statistics, thresholds per refinement)
frames.py      named file frames (inria -y up, opengl +y up, blender +z up) and rotating Gaussians
               between them (means, quaternions, every SH band)
"""
