/** Nicknames drawn for newcomers: one word each, all different. The order matters: every replica indexes this list with the same random draws. */
export const NICKNAMES: readonly string[] = [
  "Aardvark", "Albatross", "Alpaca", "Anchovy", "Anteater", "Antelope", "Armadillo", "Axolotl", "Badger", "Barracuda",
  "Beaver", "Bison", "Bobcat", "Bonobo", "Buffalo", "Butterfly", "Camel", "Capybara", "Caribou", "Cassowary",
  "Chameleon", "Cheetah", "Chinchilla", "Cicada", "Cobra", "Condor", "Cormorant", "Coyote", "Crane", "Cricket",
  "Dingo", "Dolphin", "Dormouse", "Dragonfly", "Dugong", "Eagle", "Echidna", "Eland", "Emu", "Falcon",
  "Ferret", "Finch", "Firefly", "Flamingo", "Gazelle", "Gecko", "Gibbon", "Giraffe", "Gnu", "Gopher",
  "Gorilla", "Grasshopper", "Grouse", "Hamster", "Hedgehog", "Heron", "Hippo", "Hornbill", "Hyena", "Ibex",
  "Ibis", "Iguana", "Impala", "Jackal", "Jaguar", "Jellyfish", "Kangaroo", "Kestrel", "Kingfisher", "Kiwi",
  "Koala", "Kookaburra", "Lemur", "Leopard", "Llama", "Lobster", "Lynx", "Macaw", "Magpie", "Manatee",
  "Mandrill", "Marmot", "Meerkat", "Mongoose", "Moose", "Narwhal", "Newt", "Nightingale", "Ocelot", "Octopus",
  "Opossum", "Orca", "Osprey", "Ostrich", "Otter", "Owl", "Pangolin", "Panther", "Parrot", "Pelican",
  "Penguin", "Platypus", "Porcupine", "Puffin", "Quail", "Quokka", "Raccoon", "Raven", "Salamander", "Seahorse",
  "Sloth", "Sparrow", "Squirrel", "Starling", "Stingray", "Tapir", "Toucan", "Walrus", "Wombat", "Zebra",
];
