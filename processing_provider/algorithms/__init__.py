"""The topt algorithms, one module each."""


def all_algorithms():
    from .cluster_regions import ClusterRegionsAlgorithm
    from .evaluate_embeddings import EvaluateEmbeddingsAlgorithm
    from .predict_regions import PredictRegionsAlgorithm
    from .train_regions import TrainRegionsAlgorithm

    return [TrainRegionsAlgorithm(), PredictRegionsAlgorithm(),
            EvaluateEmbeddingsAlgorithm(), ClusterRegionsAlgorithm()]
