//! `Graph::dependencies` finds nodes whether or not they were added in id order.
#![allow(clippy::unwrap_used)]

use flowc::ir::Graph;
use petgraph::graph::DiGraph;

fn graph(ids: &[usize], edges: &[(usize, usize)]) -> Graph {
    let mut dag = DiGraph::new();
    let ix: Vec<_> = ids.iter().map(|&id| dag.add_node(id)).collect();
    for &(a, b) in edges {
        let pos = |id| ids.iter().position(|&x| x == id).unwrap();
        dag.add_edge(ix[pos(a)], ix[pos(b)], ());
    }
    Graph { dag }
}

#[test]
fn dependencies_in_id_order_and_not() {
    for ids in [[1, 4, 7, 9], [9, 1, 7, 4]] {
        let g = graph(&ids, &[(1, 9), (4, 9), (7, 4), (1, 4)]);
        assert_eq!(g.dependencies(9), vec![1, 4]);
        assert_eq!(g.dependencies(4), vec![1, 7]);
        assert_eq!(g.dependencies(1), Vec::<usize>::new());
        assert_eq!(g.dependencies(5), Vec::<usize>::new());
        assert!(g.index_of(7).is_some());
        assert!(g.index_of(8).is_none());
    }
}
