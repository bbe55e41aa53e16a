// Compiled by g++ running under the preloaded allocator, then run under it
// too; its output is compared with gxx_program.expected.
#include <algorithm>
#include <cstdint>
#include <iostream>
#include <map>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

namespace {

// Deterministic pseudo-random words (no <random>: its distributions are not
// guaranteed to produce the same values across library versions).
std::string make_word(std::uint32_t& state) {
  state = state * 1103515245u + 12345u;
  const std::size_t length = 1 + (state >> 16) % 12;
  std::string word;
  for (std::size_t i = 0; i < length; ++i) {
    state = state * 1103515245u + 12345u;
    word += static_cast<char>('a' + (state >> 16) % 6);
  }
  return word;
}

struct Node {
  std::string label;
  std::vector<std::unique_ptr<Node>> children;
};

std::size_t count_nodes(const Node& node) {
  std::size_t n = 1;
  for (const auto& child : node.children) n += count_nodes(*child);
  return n;
}

}  // namespace

int main() {
  std::uint32_t state = 42;
  std::vector<std::string> words;
  for (int i = 0; i < 200000; ++i) words.push_back(make_word(state));

  std::map<std::string, int> frequency;
  for (const auto& w : words) ++frequency[w];
  const auto most_common = std::max_element(
      frequency.begin(), frequency.end(),
      [](const auto& a, const auto& b) { return a.second < b.second; });
  std::cout << "distinct words: " << frequency.size() << '\n';
  std::cout << "most common: " << most_common->first << ' ' << most_common->second << '\n';

  std::map<std::size_t, std::vector<std::string>> by_length;
  for (const auto& [word, count] : frequency) by_length[word.size()].push_back(word);
  for (const auto& [length, list] : by_length)
    std::cout << "length " << length << ": " << list.size() << " words, first " << list.front()
              << '\n';

  std::string text;
  for (std::size_t i = 0; i < words.size(); i += 7) text += words[i] + ' ';
  std::cout << "text length: " << text.size() << '\n';

  std::sort(words.begin(), words.end());
  words.erase(std::unique(words.begin(), words.end()), words.end());
  std::cout << "unique after sort: " << words.size() << " last " << words.back() << '\n';

  // A tree of heap nodes, built and torn down.
  Node root{"root", {}};
  std::vector<Node*> frontier{&root};
  for (int level = 0; level < 6; ++level) {
    std::vector<Node*> next;
    for (Node* node : frontier) {
      for (int c = 0; c < 6; ++c) {
        node->children.push_back(
            std::make_unique<Node>(Node{node->label + "/" + std::to_string(c), {}}));
        next.push_back(node->children.back().get());
      }
    }
    frontier = std::move(next);
  }
  std::cout << "tree nodes: " << count_nodes(root) << " deepest " << frontier.back()->label << '\n';

  std::vector<long> numbers(1000000);
  std::iota(numbers.begin(), numbers.end(), 1);
  std::cout << "sum: " << std::accumulate(numbers.begin(), numbers.end(), 0L) << '\n';
  return 0;
}
