"""The fake sd-scripts `flux_train_network.py` (FLUX.1 and Chroma): the fake sdxl_train_network.py with this script's arguments."""

import sdxl_train_network as fake

fake.use_script("flux_train_network.py")
setup_parser = fake.make_parser

if __name__ == "__main__":
    fake.main()
