#include <airlock/airlock.hpp>
int main() { return 0; }
