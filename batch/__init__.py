"""Many scenes at once: every scene folder is one task on Dask distributed (``scripts/batch.py``).

- ``scenes``: which folders are scenes (they hold ``image.json``), their names and the folder the summary goes to.
- ``gpus``: which GPU a worker's stages see (``CUDA_VISIBLE_DEVICES``) and the environment they run in.
- ``stages``: the task itself: a scene's stage scripts run one after the other as subprocesses, each
  skipped when its outputs are complete and fresh (``scene.manifest.require_stage``).
- ``child``: the shim each stage starts through, so that it dies with its worker.
- ``evaluate``: PSNR / SSIM (/ LPIPS when its weights are on disk) of stage 1's video against ``gt.mp4``.
- ``runner``: the cluster (a ``LocalCluster`` or a scheduler's address), the tasks, the progress lines.
- ``summary``: ``batch_summary.csv`` and ``batch_summary.html``, one row per scene, with thumbnails.

Every per-scene guarantee of the stages holds because the stages are run exactly as a user runs them.
"""
