-- The official postgres image runs this once, on an empty data volume.
CREATE DATABASE alphaforge_mlflow OWNER alphaforge;
CREATE DATABASE alphaforge_optuna OWNER alphaforge;
