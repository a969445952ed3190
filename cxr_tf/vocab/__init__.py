"""Label vocabularies: the four label states, uncertainty and blank policies, each dataset's findings,
and the crosswalk between datasets' finding names."""
