"""TFRecord shards: the record codec, the writer, the records-directory reader, site partitions,
``prepare`` (source -> manifest -> shards) and phantom set-up for demos."""
