"""Exception types. The CLI turns every OcrDeployError into one line on stderr and exit code 1."""


class OcrDeployError(Exception):
    """A problem the user can fix; the message says what was wrong and what to do."""


class CheckpointError(OcrDeployError):
    """A weights file that cannot be read or does not fit the network."""


class ConfigError(OcrDeployError):
    """Options, presets or a reference YAML that contradict each other or the weights."""


class ExportError(OcrDeployError):
    """The ONNX file could not be produced or written."""


class VerificationError(OcrDeployError):
    """The exported graph does not compute what PyTorch computes."""


class ModelFileError(OcrDeployError):
    """A model file that is missing, unreadable or was not made by ocr-deploy."""
