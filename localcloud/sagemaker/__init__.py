"""Shepherd's local SageMaker: the control plane on the AWS wire protocol, and real training and inference."""
