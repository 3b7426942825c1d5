"""Lightning modules, data modules and the command line of torch-cs231n."""
