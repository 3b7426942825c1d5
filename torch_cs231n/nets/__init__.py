"""The CS231n networks and how they learn: model builders (:mod:`.models`), weight initialisation
(:mod:`.init`), the course's update rules (:mod:`.optim`) and the sandwich-layer container
(:mod:`.sandwich`)."""
