"""The converters: annotation formats → training datasets, and model outputs → Label Studio results.

The second floor (above :mod:`kernel`, below :mod:`training`): it knows no trainer, queue or server.
Every dataset it writes is one of the dataset kinds (:data:`kernel.tags.DATASET_KINDS`: ``detect``,
``obb``, ``yolo-segment``, ``segment``, ``classify``) in the layout of :mod:`converters.layout`, and
what differs between the kinds is each kind's row (:mod:`converters.kinds`), never a branch here.

- **Label Studio → datasets**: :mod:`converters.labelstudio` (exports: which annotation counts, splits,
  images) with :mod:`converters.labelstudio_regions` (one annotation's regions → an item's labels) and
  :mod:`converters.regions` (results → pixel geometry), :mod:`converters.rle` (brush masks),
  :mod:`converters.images` (task images, fetched within limits);
- **other formats → datasets**: :mod:`converters.labelimg` (Pascal VOC / YOLO), :mod:`converters.pathology`
  (Aperio XML polygons, BreCaHAD points), :mod:`converters.inputs` (reading them, checked);
- **writing and reshaping datasets**: :mod:`converters.dataset` (atomic writer), :mod:`converters.split`
  (patient-level splits), :mod:`converters.tiling` (large fields → tiles), :mod:`converters.report`
  (what converted, what was skipped and why);
- **back to Label Studio**: :mod:`converters.predictions` (model outputs → pre-annotations),
  :mod:`converters.ground_truth` (any labelled data → replayable tasks), :mod:`converters.lsauth`
  (API credentials);
- **whole slides**: :mod:`converters.slides` (fields, tissue), :mod:`converters.slide_annotations` and
  :mod:`converters.geojson` (annotations → QuPath GeoJSON), :mod:`converters.pyramid` (pyramidal TIFFs);
  :mod:`converters.synthetic` makes H&E-like tiles with exact labels.
"""
