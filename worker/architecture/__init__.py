"""A trial's network as data (``architecture.json``) and what is made from it: the 2D diagram (SVG, PNG),
the interactive 3D/2D view (``architecture.html``) and the glTF export (``architecture.glb``)."""
