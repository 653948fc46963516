"""The fake sd-scripts `train_network.py` (SD 1.x): the fake sdxl_train_network.py with this script's arguments."""

import sdxl_train_network as fake

fake.use_script("train_network.py")
setup_parser = fake.make_parser

if __name__ == "__main__":
    fake.main()
