"""Global poolings, one file each, named by params.yaml `model.pooling` (`@pooling("name")`)."""
