"""The code file of the MLflow model ("models from code"): MLflow copies this file into the
model folder and runs it on load, so the folder holds code and the bundle, never a pickle.

Keep it thin: it runs wherever the model is loaded (a notebook, ``mlflow models serve``,
Spark workers), where only the installed crs_ml and the model's requirements exist.
"""

from mlflow.models import set_model

from crs_ml.tracking.pyfunc import CrsSeverityModel

set_model(CrsSeverityModel())
