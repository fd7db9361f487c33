import SluiceNet
