"""Face reenactment: one photo animated by the head motion and expression of a driving video."""
