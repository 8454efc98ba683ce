# Nothing: the stub build does not use the Slicer USE file.
