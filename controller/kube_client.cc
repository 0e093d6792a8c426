#include "controller/kube_client.h"

namespace petrel {

Result<ObjectList> KubeClient::ListAll(const ResourceType& type, const std::string& namespace_,
                                       ListOptions options) {
  ObjectList all;
  while (true) {
    PETREL_ASSIGN_OR_RETURN(ObjectList page, List(type, namespace_, options));
    for (auto& item : page.items) all.items.push_back(std::move(item));
    all.resource_version = page.resource_version;
    if (page.continue_token.empty()) break;
    options.continue_token = page.continue_token;
  }
  return all;
}

}  // namespace petrel
